/* speedups_driver.c -- the host's C checks (host/speedups) under AddressSanitizer.
 *
 * Usage: speedups_driver LIBRARY SCRATCH_FILE
 *
 * Feeds ph_precheck_elf every prefix of LIBRARY's first 4 KiB, then prefixes
 * at a stride up to its full size, then 3000 copies with random bytes
 * overwritten in the headers and first pages (fixed seed): each image in an
 * exact-size heap buffer (so ASan sees any read past it), in a file read
 * through pread (SCRATCH_FILE), and by path.  Then, when LIBRARY exports
 * plugin_register_all_Greeter_v1 and its descriptor, runs ph_register_all
 * against its own descriptor and releases the array as the host does, and
 * the directory load's calls: ph_precheck_paths twice (the second time with
 * the identities the first recorded), ph_open_register_paths on the library
 * three times over (and an empty path; a host-owned library's makers read
 * and made, then unmade) and ph_release_close_all on what it made; and
 * ph_elf_makers on every image, in memory and from the file.  Exit 0: clean; 1: a check failed.  Memory errors are ASan's to report. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "speedups.h"

static int check_image(const unsigned char *image, size_t len, const char *scratch, int cls, int order, int machine) {
    unsigned char *copy = malloc(len ? len : 1);
    if (copy == NULL) return -1;
    memcpy(copy, image, len);
    int in_memory = ph_precheck_elf(-1, copy, len, 8192, cls, order, machine);
    int in_memory_small_head = ph_precheck_elf(-1, copy, len, 64, cls, order, machine);
    free(copy);
    int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (len && write(fd, image, len) != (ssize_t)len) || close(fd) != 0) return -1;
    fd = open(scratch, O_RDONLY);
    if (fd < 0) return -1;
    int on_fd = ph_precheck_elf(fd, NULL, len, 8192, cls, order, machine);
    int on_fd_small_head = ph_precheck_elf(fd, NULL, len, 64, cls, order, machine);
    close(fd);
    int by_path = ph_precheck_path(scratch, 8192, cls, order, machine, (int64_t)geteuid());
    /* The same bytes read the same way (an open file, or by path) get the same
     * verdict.  The other calls differ in what counts as the head, which can
     * change a verdict; they run for ASan's sake. */
    (void)in_memory, (void)in_memory_small_head, (void)on_fd_small_head;
    if (on_fd != by_path) {
        printf("  FAIL: verdicts differ on a %zu-byte image: fd %d, path %d\n", len, on_fd, by_path);
        return 1;
    }
    /* The makers read from .dynsym (exports.c): in memory (an exact-size copy) and from the file,
     * the same answer; and with too little room for the names, never a pass with a partial list. */
    copy = malloc(len ? len : 1);
    if (copy == NULL) return -1;
    memcpy(copy, image, len);
    char types[2][1024];
    size_t found[2][2];
    unsigned char identity[PH_IDENTITY_WORDS * 8];
    int read_in_memory = ph_elf_makers(NULL, copy, len, "Greeter", types[0], sizeof types[0], found[0], NULL);
    int read_from_file = ph_elf_makers(scratch, NULL, 0, "Greeter", types[1], sizeof types[1], found[1], identity);
    int small = ph_elf_makers(NULL, copy, len, "Greeter", types[1], 3, found[1], NULL);
    free(copy);
    if (read_in_memory != read_from_file || (read_in_memory == PH_PASS && found[0][0] && small == PH_PASS)) {
        printf("  FAIL: ph_elf_makers on a %zu-byte image: memory %d, file %d, small %d\n", len, read_in_memory,
               read_from_file, small);
        return 1;
    }
    return 0;
}

static int check_aggregate(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return 0;
    void *make_all = dlsym(lib, "plugin_register_all_Greeter_v1");
    void *release_all = dlsym(lib, "plugin_unregister_all_Greeter_v1");
    const PluginAbiDescriptor *descriptor = dlsym(lib, "plugin_abi_descriptor_Greeter_v1");
    int failed = 0;
    if (make_all != NULL && release_all != NULL && descriptor != NULL) {
        uintptr_t out[256];
        char names[256];
        int verdict = ph_register_all((uintptr_t)descriptor, (const char *)descriptor, descriptor->struct_size,
                                      (uintptr_t)make_all, 1u << 16, "Greeter", descriptor->trait_version,
                                      descriptor->vtable_size, descriptor->method_count, out, 256, names,
                                      sizeof names);
        /* A NULL array (the null_maker plugin) must fail; any other array here is well formed. */
        if (verdict != (out[0] == 0 ? PH_FAIL : PH_PASS)) {
            printf("  FAIL: ph_register_all on %s: verdict %d\n", path, verdict);
            failed = 1;
        }
        int made = out[0] != 0;
        if (out[0] != 0) {
            void (*release)(PluginRegistrationArray *);
            *(void **)&release = release_all;
            release((PluginRegistrationArray *)out[0]);
        }
        /* Too little room: the verdict says so, and the array is still returned to release. */
        if (!made) {
            dlclose(lib);
            return failed;
        }
        verdict = ph_register_all((uintptr_t)descriptor, (const char *)descriptor, descriptor->struct_size,
                                  (uintptr_t)make_all, 1u << 16, "Greeter", descriptor->trait_version,
                                  descriptor->vtable_size, descriptor->method_count, out, 4, names, sizeof names);
        if (verdict != PH_UNSUPPORTED || out[0] == 0) {
            printf("  FAIL: ph_register_all with a 4-word buffer: verdict %d\n", verdict);
            failed = 1;
        }
        if (out[0] != 0) {
            void (*release)(PluginRegistrationArray *);
            *(void **)&release = release_all;
            release((PluginRegistrationArray *)out[0]);
        }
    }
    dlclose(lib);
    return failed;
}

static int check_directory_calls(const char *path, int cls, int order, int machine) {
    const size_t width = PH_IDENTITY_WORDS * sizeof(uint64_t);
    char paths[3 * 4096 + 4];
    size_t at = 0, len = strlen(path);
    if (len >= 4096) return 0;
    for (int i = 0; i < 3; i++) { /* path, "", path */
        if (i != 1) {
            memcpy(paths + at, path, len);
            at += len;
        }
        paths[at++] = '\0';
    }
    unsigned char identities[3 * PH_IDENTITY_WORDS * 8], again[3 * PH_IDENTITY_WORDS * 8], verdicts[3], second[3];
    ph_precheck_paths(paths, 3, 8192, cls, order, machine, (int64_t)geteuid(), NULL, identities, verdicts);
    ph_precheck_paths(paths, 3, 8192, cls, order, machine, (int64_t)geteuid(), identities, again, second);
    if (memcmp(verdicts, second, sizeof verdicts) != 0 || (verdicts[0] == PH_PASS && memcmp(identities, again, width))) {
        printf("  FAIL: a second ph_precheck_paths with the identities of the first differs\n");
        return 1;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return 0;
    const PluginAbiDescriptor *descriptor = dlsym(lib, "plugin_abi_descriptor_Greeter_v1");
    int failed = 0;
    if (descriptor != NULL) {
        static const char symbols[] = "plugin_register_all_Greeter_v1\0plugin_abi_descriptor_Greeter_v1\0"
                                      "plugin_unregister_all_Greeter_v1\0plugin_unmaker_counter_Greeter_v1";
        uintptr_t out[512];
        char names[512];
        size_t starts[5];
        unsigned char read_identities[3 * PH_IDENTITY_WORDS * 8];
        size_t done = ph_open_register_paths(paths, 3, RTLD_NOW | RTLD_LOCAL, symbols, (const char *)descriptor,
                                             descriptor->struct_size, 1u << 16, "Greeter", descriptor->trait_version,
                                             descriptor->vtable_size, descriptor->method_count, out, 512, names,
                                             sizeof names, starts, "\0\0\0", read_identities);
        uintptr_t calls[3 * PH_RELEASE_WORDS], results[6];
        size_t n = 0, names_at = 0;
        for (size_t i = 0; i < done; i++) {
            const uintptr_t *file = out + starts[i];
            if (i == 1 && file[0] != PH_NOT_OPENED) {
                printf("  FAIL: an empty path was opened\n");
                failed = 1;
            }
            if (file[0] == PH_MAKERS_PASS || file[0] == PH_MAKERS_PARTIAL) { /* host-owned: each unmade once */
                size_t makers = 0;
                const char *type = names + names_at;
                for (const char *end = type + file[PH_OPEN_WORDS]; type < end; type += strlen(type) + 1) makers++;
                const uintptr_t *made = file + PH_OPEN_WORDS + PH_HEADER_WORDS, *unmakers = made + makers;
                for (size_t m = 0; m < file[PH_OPEN_WORDS + 1]; m++) {
                    int again = made[m] == 0;
                    for (size_t k = 0; k < m; k++) again |= made[k] == made[m];
                    if (!again) {
                        void (*unmake)(PluginRegistration *);
                        *(void **)&unmake = (void *)unmakers[m];
                        unmake((PluginRegistration *)made[m]);
                    }
                }
                names_at += file[PH_OPEN_WORDS + 2];
                dlclose((void *)file[1]);
                continue;
            }
            if (file[0] == PH_PASS) names_at += file[PH_OPEN_WORDS + 2];
            if (file[0] == PH_PASS && file[3] != 0) { /* released by the plugin, then closed */
                uintptr_t *call = calls + n++ * PH_RELEASE_WORDS;
                call[0] = file[3], call[1] = file[PH_OPEN_WORDS], call[2] = file[4], call[3] = file[1];
            } else if (file[1] != 0) {
                if (file[0] != PH_NO_AGGREGATE && file[PH_OPEN_WORDS] != 0 && file[3] != 0) {
                    void (*release)(PluginRegistrationArray *) = (void (*)(PluginRegistrationArray *))file[3];
                    release((PluginRegistrationArray *)file[PH_OPEN_WORDS]);
                }
                dlclose((void *)file[1]);
            }
        }
        ph_release_close_all(calls, n, results);
        for (size_t i = 0; i < n; i++) {
            if (results[2 * i + 1] == PH_CLOSE_FAILED) {
                printf("  FAIL: ph_release_close_all could not close\n");
                failed = 1;
            }
        }
    }
    dlclose(lib);
    return failed;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIBRARY SCRATCH_FILE\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) return 2;
    static unsigned char data[1 << 22];
    size_t size = fread(data, 1, sizeof data, f);
    fclose(f);
    if (size < 64) return 2;
    const int cls = data[4], order = data[5];
    const int machine = data[18] | data[19] << 8;
    int failed = 0;
    for (size_t n = 0; n <= size && n <= 4096; n++) failed |= check_image(data, n, argv[2], cls, order, machine);
    for (size_t n = 4096; n <= size; n += 61) failed |= check_image(data, n, argv[2], cls, order, machine);
    static unsigned char mutated[1 << 22];
    srand(12345);
    for (int round = 0; round < 3000; round++) {
        memcpy(mutated, data, size);
        int patches = 1 + rand() % 4;
        for (int p = 0; p < patches; p++) {
            int where = rand() % 4;
            size_t span = where == 0 ? 128 : (size < 16384 ? size : 16384);
            size_t at = (size_t)rand() % span;
            if (where == 1 && size > 4096) { /* the section headers, at the end of the file */
                at = size - 1 - (size_t)rand() % 4096;
            }
            mutated[at] = (unsigned char)rand();
        }
        size_t len = rand() % 4 == 0 ? (size_t)rand() % size : size;
        failed |= check_image(mutated, len, argv[2], cls, order, machine);
    }
    failed |= check_aggregate(argv[1]);
    failed |= check_directory_calls(argv[1], cls, order, machine);
    printf("%s: %s\n", argv[1], failed ? "FAILED" : "clean");
    return failed ? 1 : 0;
}
