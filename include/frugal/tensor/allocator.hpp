#ifndef FRUGAL_TENSOR_ALLOCATOR_HPP
#define FRUGAL_TENSOR_ALLOCATOR_HPP

/// @file
/// The allocator of frugal's tensors: 64-byte aligned storage, with large
/// blocks kept for reuse instead of being returned to the operating system.
///
/// Why: a layer's buffers change size whenever its batch does. A gated block
/// runs on a different number of samples every step (SLU), a precision group
/// of a dynamic-precision layer holds a different share of every batch
/// (DFQ), and evaluation batches differ from training ones. With the C
/// library's allocator a freed multi-megabyte buffer goes back to the kernel
/// and the next one comes back as fresh pages, which the kernel zero-fills on
/// first touch: measured on ResNet-38 (bench/slu.cpp), that made a gated
/// stack running 80% of its samples as slow as one running all of them. The
/// pool removes that cost (docs/benchmarks.md, "SLU").
///
/// How: a request of at least `pool_min_bytes` is rounded up to a size class
/// (eight classes per power of two, so at most 12.5% is wasted by the class;
/// up to ~41% when a larger cached block is taken, below) and served
/// from that class's free list when it has a block, else from the smallest
/// cached block at most a quarter larger than the class (a buffer that is a
/// few samples larger or smaller every step then finds one instead of a
/// fresh, zero-filled block: bench_slu's in-process mode missed 1420 times
/// before, 1049 after); freed blocks go back to the list of their own class
/// while the cached total stays under the limit (default 2 GiB,
/// `tensor_pool::instance().set_limit`), beyond it they are freed. Smaller
/// requests go straight to the C library. `release()` returns every cached
/// block. Under AddressSanitizer the limit defaults to 0 (no reuse), so that
/// use-after-free in tensors stays detectable.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace frugal {

/// Process-wide cache of large tensor blocks (see the file comment).
class tensor_pool {
public:
    static constexpr std::size_t alignment = 64;
    static constexpr std::size_t pool_min_bytes = std::size_t{64} << 10;

    struct stats {
        std::size_t cached_bytes = 0; ///< held in free lists now
        std::size_t limit_bytes = 0;
        std::uint64_t hits = 0;   ///< large requests served from a free list
        std::uint64_t misses = 0; ///< large requests that asked the C library
    };

    /// The one pool of the process (never destroyed, so tensors with static
    /// storage duration can still free into it at exit).
    static tensor_pool& instance() {
        static tensor_pool* p = new tensor_pool();
        return *p;
    }

    /// Bytes actually reserved for a request of `bytes` (its size class).
    [[nodiscard]] static constexpr std::size_t class_bytes(std::size_t bytes) noexcept {
        if (bytes < pool_min_bytes) {
            return (bytes + alignment - 1) / alignment * alignment;
        }
        std::size_t e = 0;
        while ((std::size_t{2} << e) <= bytes) {
            ++e;
        }
        const std::size_t step = std::size_t{1} << (e - 3); // e >= 16 here
        return (bytes + step - 1) / step * step;
    }

    void* allocate(std::size_t bytes) {
        const std::size_t c = class_bytes(bytes == 0 ? 1 : bytes);
        if (c >= pool_min_bytes) {
            std::lock_guard<std::mutex> lock(mutex_);
            // the smallest cached block of this class or of one up to max_slack larger
            auto it = free_.lower_bound(c);
            while (it != free_.end() && it->first <= c + c / max_slack && it->second.empty()) {
                ++it; // (empty lists stay: a later deallocate of their class needs no allocation)
            }
            bool taken = false;
            if (it != free_.end() && it->first <= c + c / max_slack) {
                void* p = it->second.back();
                const std::size_t got = it->first;
                taken = true;
                if (got != c) {
                    try {
                        larger_.emplace(p, got);
                    } catch (...) { // no room to remember it: leave it cached, ask the C library
                        taken = false;
                    }
                }
                if (taken) {
                    it->second.pop_back();
                    cached_ -= got;
                    ++hits_;
                    return p;
                }
            }
            ++misses_;
        }
        void* p = std::aligned_alloc(alignment, c);
        if (p == nullptr && c >= pool_min_bytes) {
            release();
            p = std::aligned_alloc(alignment, c);
        }
        if (p == nullptr) {
            throw std::bad_alloc();
        }
        return p;
    }

    void deallocate(void* p, std::size_t bytes) noexcept {
        if (p == nullptr) {
            return;
        }
        std::size_t c = class_bytes(bytes == 0 ? 1 : bytes);
        if (c >= pool_min_bytes) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (auto f = larger_.find(p); f != larger_.end()) { // served from a larger class
                c = f->second;
                larger_.erase(f);
            }
            if (cached_ + c <= limit_) {
                try {
                    free_[c].push_back(p);
                    cached_ += c;
                    return;
                } catch (...) { // no room to remember it: free it below
                }
            }
        }
        std::free(p);
    }

    /// Frees every cached block.
    void release() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& [c, v] : free_) {
            for (void* p : v) {
                std::free(p);
            }
            v.clear();
        }
        cached_ = 0;
    }

    /// Most bytes kept in the free lists (0: no reuse); lowering it frees at once.
    void set_limit(std::size_t bytes) noexcept {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            limit_ = bytes;
            if (cached_ <= limit_) {
                return;
            }
        }
        release();
    }

    [[nodiscard]] stats statistics() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return {cached_, limit_, hits_, misses_};
    }

private:
    tensor_pool() = default;

#if defined(__SANITIZE_ADDRESS__)
    static constexpr std::size_t default_limit = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    static constexpr std::size_t default_limit = 0;
#else
    static constexpr std::size_t default_limit = std::size_t{2} << 30;
#endif
#else
    static constexpr std::size_t default_limit = std::size_t{2} << 30;
#endif

    /// A request takes a cached block up to 1/max_slack larger than its class when its own class
    /// has none (buffers whose size changes every step then stop missing).
    static constexpr std::size_t max_slack = 4;

    mutable std::mutex mutex_;
    std::map<std::size_t, std::vector<void*>> free_;     // size class -> cached blocks
    std::unordered_map<void*, std::size_t> larger_; // blocks in use that came from a larger class
    std::size_t cached_ = 0, limit_ = default_limit;
    std::uint64_t hits_ = 0, misses_ = 0;
};

/// Standard allocator over tensor_pool: what frugal's tensors store their elements with.
template <class T>
struct tensor_allocator {
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_move_assignment = std::true_type;
    using is_always_equal = std::true_type;
    template <class U>
    struct rebind {
        using other = tensor_allocator<U>;
    };

    tensor_allocator() noexcept = default;
    template <class U>
    tensor_allocator(const tensor_allocator<U>&) noexcept {} // NOLINT(google-explicit-constructor)

    [[nodiscard]] T* allocate(std::size_t n) {
        if (n > static_cast<std::size_t>(-1) / sizeof(T) / 2) {
            throw std::bad_array_new_length();
        }
        return static_cast<T*>(tensor_pool::instance().allocate(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { tensor_pool::instance().deallocate(p, n * sizeof(T)); }
    [[nodiscard]] std::size_t max_size() const noexcept { return static_cast<std::size_t>(-1) / sizeof(T) / 2; }

    template <class U>
    friend bool operator==(const tensor_allocator&, const tensor_allocator<U>&) noexcept {
        return true;
    }
};

} // namespace frugal

#endif
