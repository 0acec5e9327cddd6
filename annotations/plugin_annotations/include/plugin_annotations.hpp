/*
 * plugin_annotations.hpp -- C++ classes as plugin implementations (C++17 or later).
 *
 * Purpose: register a class whose member functions implement a trait.  The
 * maker creates one instance with `new Class()`, the unmaker `delete`s it;
 * each vtable entry is a noexcept thunk that calls the member function, so
 * no exception ever crosses the C ABI (see "Exceptions" below).
 *
 * Minimal plugin:
 *
 *   #include <string>
 *   #include "plugin_annotations.hpp"
 *   #include "plugin_trait_greeter.h"
 *
 *   class English {
 *   public:
 *       std::string greet(const char *name) { return "Hello, " + std::string(name) + "!"; }
 *   };
 *   PLUGIN_CLASS(Greeter, English, English)
 *   PLUGIN_AGGREGATES(Greeter)
 *
 * Macros:
 *   PLUGIN_CLASS(T, Ty, Class)
 *       Registers Class (default-constructible) as implementation Ty of trait T:
 *       exactly what PLUGIN_IMPL_WITH_STATE exports, with the instance
 *       made by `new Class()` and released by `delete`.  Each method of the
 *       trait is a member function taking the method's C parameters (without
 *       `void *self`, and without `char **error` for a Status method).
 *   PLUGIN_IMPL, PLUGIN_AGGREGATES, ... from plugin_annotations.h work in C++
 *   as in C (C++20 takes `.greet = f`; C++17 the functions in method order).
 *
 * What a member function may return, per result marker:
 *   OwnedStr    std::string / std::string_view (copied with malloc), or a
 *               malloc'd char * (passed on as is).
 *   OwnedBytes  std::vector<uint8_t> / std::string (copied), or a PluginBytes.
 *   Status      void (success: 0) or an int32_t code; a thrown plugin::Error
 *               gives its code and message, any other exception -1 and what().
 *   scalars     the C type (or anything convertible to it); None: void.
 *
 * Exceptions: a thunk catches everything.  What the caller then sees is the
 * trait's error path: a Status method returns the code and sets *error (the
 * message, released by the host); an OwnedStr method returns NULL (the host
 * raises PluginCallError); OwnedBytes returns {NULL, 1} (a failure, where
 * {NULL, 0} is an empty result: PluginCallError too); a scalar returns 0;
 * a maker whose constructor throws returns NULL (MakerReturnedNullError).
 * plugin::last_exception_message() says what the last contained exception of
 * the calling thread was.
 *
 * Exports: link C++ plugins so that only plugin_* is exported (the builder's
 * default for language = "cpp": a version script).  libstdc++'s inline
 * statics are STB_GNU_UNIQUE symbols when exported, and glibc never unloads
 * a library that exports one.
 *
 * Changelog:
 *   2026-12-08  first release.
 */
#ifndef PLUGIN_ANNOTATIONS_HPP
#define PLUGIN_ANNOTATIONS_HPP

#ifndef __cplusplus
#  error "plugin_annotations.hpp is C++; C plugins include plugin_annotations.h"
#endif
#if __cplusplus < 201703L
#  error "plugin_annotations.hpp needs C++17 or later (-std=c++17)"
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "plugin_annotations.h"

namespace plugin {

/* Thrown by a Status method: code (non-zero) and message reach the host as PluginMethodError. */
class Error : public std::runtime_error {
public:
    Error(int32_t code, const std::string &message) : std::runtime_error(message), code_(code) {}
    int32_t code() const noexcept { return code_; }

private:
    int32_t code_;
};

/* A malloc'd, NUL-terminated copy (NULL when out of memory): what an OwnedStr carries. */
inline char *owned_string(std::string_view text) noexcept {
    char *out = static_cast<char *>(std::malloc(text.size() + 1));
    if (out != nullptr) {
        if (!text.empty()) {
            std::memcpy(out, text.data(), text.size());
        }
        out[text.size()] = '\0';
    }
    return out;
}

/* A malloc'd copy of n bytes: what an OwnedBytes carries.  Empty: {NULL, 0}; out of memory:
 * {NULL, n}, which the host reports as a failed call (PluginCallError) rather than as empty. */
inline PluginBytes owned_bytes(const void *data, size_t n) noexcept {
    PluginBytes out = {nullptr, n};
    if (n == 0) {
        return out;
    }
    out.data = static_cast<uint8_t *>(std::malloc(n));
    if (out.data != nullptr) {
        std::memcpy(out.data, data, n);
    }
    return out;
}

namespace detail {

/* A plain char buffer, not a std::string: a thread_local with a destructor
 * registers it through __cxa_thread_atexit_impl, and glibc then keeps the
 * library mapped until that thread exits (the library could not unload). */
constexpr size_t last_message_bytes = 512;
inline char *last_message() noexcept {
    static thread_local char message[last_message_bytes];
    return message;
}

/* The message of the exception being handled; called inside a catch block only. */
inline std::string current_message() noexcept {
    try {
        throw;
    } catch (const std::exception &e) {
        return e.what();
    } catch (...) {
        return "unknown C++ exception (not derived from std::exception)";
    }
}

inline void remember(const std::string &message) noexcept {
    size_t n = message.size() < last_message_bytes - 1 ? message.size() : last_message_bytes - 1;
    std::memcpy(last_message(), message.data(), n);
    last_message()[n] = '\0';
}

inline char *to_owned_str(char *p) noexcept { return p; }
inline char *to_owned_str(const char *p) noexcept { return p ? owned_string(p) : nullptr; }
inline char *to_owned_str(std::string_view s) noexcept { return owned_string(s); }
inline char *to_owned_str(const std::string &s) noexcept { return owned_string(s); }

inline PluginBytes to_owned_bytes(PluginBytes b) noexcept { return b; }
inline PluginBytes to_owned_bytes(const std::vector<uint8_t> &v) noexcept { return owned_bytes(v.data(), v.size()); }
inline PluginBytes to_owned_bytes(const std::string &s) noexcept { return owned_bytes(s.data(), s.size()); }

template <class R, class F>
R call_SCALAR(F f) noexcept {
    try {
        return static_cast<R>(f());
    } catch (...) {
        remember(current_message());
        return R{};
    }
}

template <class R, class F>
R call_OWNEDSTR(F f) noexcept {
    try {
        return to_owned_str(f());
    } catch (...) {
        remember(current_message());
        return nullptr;
    }
}

template <class R, class F>
R call_OWNEDBYTES(F f) noexcept {
    try {
        return to_owned_bytes(f());
    } catch (...) {
        remember(current_message());
        return PluginBytes{nullptr, 1}; /* a failure, not an empty result: the host raises PluginCallError */
    }
}

template <class R, class F>
R call_VOID(F f) noexcept {
    try {
        f();
    } catch (...) {
        remember(current_message());
    }
}

inline int32_t status_error(char **error, int32_t code, const std::string &message) noexcept {
    remember(message);
    if (error != nullptr) {
        *error = owned_string(message);
    }
    return code != 0 ? code : -1;
}

template <class R, class F>
R call_STATUS(F f, char **error) noexcept {
    try {
        if constexpr (std::is_void_v<decltype(f())>) {
            f();
            return 0;
        } else {
            return static_cast<R>(f());
        }
    } catch (const Error &e) {
        return status_error(error, e.code(), e.what());
    } catch (...) {
        return status_error(error, -1, current_message());
    }
}

}  // namespace detail

/* What the last exception a thunk contained on this thread said ("" if none yet; at most 511 bytes). */
inline std::string last_exception_message() { return std::string(detail::last_message()); }

}  // namespace plugin

#define PLUGIN__CXX_EXTRA_SCALAR
#define PLUGIN__CXX_EXTRA_OWNEDSTR
#define PLUGIN__CXX_EXTRA_OWNEDBYTES
#define PLUGIN__CXX_EXTRA_VOID
#define PLUGIN__CXX_EXTRA_STATUS , error

/* One noexcept static thunk per method, inside the class's thunk struct. */
#define PLUGIN__CXX_THUNK(ctx, name, kind, ret, params, args)                                 \
    static ret name params noexcept {                                                        \
        return ::plugin::detail::call_##kind<ret>(                                          \
            [&]() -> decltype(auto) { return static_cast<Impl *>(self)->name args; }         \
                PLUGIN__CXX_EXTRA_##kind);                                                   \
    }
/* The thunks' addresses, in vtable order (a trailing comma is fine in a braced list). */
#define PLUGIN__CXX_THUNK_ADDRESS(ctx, name, kind, ret, params, args) &ctx::name,

#define PLUGIN_CLASS(T, Ty, Class)                                                            \
    namespace {                                                                               \
    struct plugin__thunks_##T##_##Ty {                                                        \
        using Impl = Class;                                                                   \
        PLUGIN_TRAIT_METHODS_##T(PLUGIN__CXX_THUNK, plugin__thunks_##T##_##Ty)                \
    };                                                                                        \
    void *plugin__new_##T##_##Ty() { return new Class(); }                                    \
    void plugin__delete_##T##_##Ty(void *instance) { delete static_cast<Class *>(instance); } \
    }                                                                                         \
    PLUGIN_IMPL_WITH_STATE(T, Ty, plugin__new_##T##_##Ty, plugin__delete_##T##_##Ty,          \
                           PLUGIN_TRAIT_METHODS_##T(PLUGIN__CXX_THUNK_ADDRESS,                \
                                                    plugin__thunks_##T##_##Ty))

#endif /* PLUGIN_ANNOTATIONS_HPP */
