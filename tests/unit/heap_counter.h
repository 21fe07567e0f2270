// Counts heap allocations in a test or bench executable, so memory claims ("an idle stream holds
// no heap memory") are measured rather than inferred from a module's own accounting.
//
// Replaces the global operator new/delete for the whole executable: include it from exactly
// one translation unit per test binary. Every non-aligned form is replaced, because some
// runtimes (AddressSanitizer's) do not forward the array and nothrow forms to the plain one.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace burrow::test {

inline std::atomic<int64_t> live_allocations{0};
// Every allocation ever made, freed or not: "no allocation per packet" is a claim about this
// count, which a free right after each allocation would hide from live_allocations.
inline std::atomic<int64_t> total_allocations{0};

inline void* counted_alloc(std::size_t size) noexcept {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p != nullptr) {
        ++live_allocations;
        ++total_allocations;
    }
    return p;
}
inline void counted_free(void* p) noexcept {
    if (p == nullptr) return;
    --live_allocations;
    std::free(p);
}

}  // namespace burrow::test

// GCC sees free() on memory from `new` and cannot tell both sides are replaced together.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
    if (void* p = burrow::test::counted_alloc(size)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
    return operator new(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return burrow::test::counted_alloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return burrow::test::counted_alloc(size);
}
void operator delete(void* p) noexcept {
    burrow::test::counted_free(p);
}
void operator delete[](void* p) noexcept {
    burrow::test::counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    burrow::test::counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    burrow::test::counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    burrow::test::counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    burrow::test::counted_free(p);
}

#pragma GCC diagnostic pop
