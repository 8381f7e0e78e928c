// SPDX-License-Identifier: GPL-2.0

//! A user mapping for KUnit tests of the mm bindings.
//!
//! KUnit runs each test case in a kernel thread; `kunit_attach_mm()` gives
//! it a fresh mm so that the test can map anonymous memory, fault it in
//! through `copy_to_user()` and then look at the page tables like a driver
//! would.

use kernel::{
    bindings,
    error::{code::EINVAL, to_result, Error, Result},
    mm::MmWithUser,
    uaccess::{UserPtr, UserSlice},
    uapi,
};

/// An anonymous private read-write mapping in the test thread's mm,
/// unmapped on drop.
pub(crate) struct UserMapping {
    start: usize,
    len: usize,
}

impl UserMapping {
    /// Maps `len` bytes, plus enough to start at a multiple of `align`.
    pub(crate) fn new(len: usize, align: usize) -> Result<Self> {
        // SAFETY: Called from a KUnit test thread; creates and attaches an
        // mm if the thread has none.
        to_result(unsafe { bindings::kunit_attach_mm() })?;
        let total = len + align;
        // SAFETY: No file; `vm_mmap()` validates the rest.
        let addr = unsafe {
            bindings::vm_mmap(
                core::ptr::null_mut(),
                0,
                total,
                (uapi::PROT_READ | uapi::PROT_WRITE) as usize,
                (uapi::MAP_PRIVATE | uapi::MAP_ANONYMOUS) as usize,
                0,
            )
        };
        if let Some(e) = err_value(addr) {
            return Err(e);
        }
        let start = addr.next_multiple_of(align);
        // Trim what alignment left over, so the VMA is exactly the range.
        // SAFETY: Both pieces lie inside the mapping we just made.
        unsafe {
            if start > addr {
                bindings::vm_munmap(addr, start - addr);
            }
            if addr + total > start + len {
                bindings::vm_munmap(start + len, addr + total - start - len);
            }
        }
        Ok(Self { start, len })
    }

    /// The first address.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// The length in bytes.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mm of the test thread.
    pub(crate) fn mm(&self) -> &MmWithUser {
        // SAFETY: `new()` attached an mm to this thread, which keeps it
        // until the thread exits, after `self` is gone.
        unsafe { MmWithUser::from_raw((*bindings::get_current()).mm) }
    }

    /// `madvise(start + offset, len, advice)`.
    pub(crate) fn madvise(&self, offset: usize, len: usize, advice: u32) -> Result {
        // SAFETY: The mm is the caller's own; `do_madvise()` checks the range.
        to_result(unsafe {
            bindings::do_madvise(self.mm().as_raw(), self.start + offset, len, advice as i32)
        })
    }

    /// Writes `data` at `start + offset`, faulting pages in as a CPU store
    /// would.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result {
        if offset + data.len() > self.len {
            return Err(EINVAL);
        }
        UserSlice::new(UserPtr::from_addr(self.start + offset), data.len())
            .writer()
            .write_slice(data)
    }

    /// Reads `buf.len()` bytes at `start + offset`.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result {
        if offset + buf.len() > self.len {
            return Err(EINVAL);
        }
        UserSlice::new(UserPtr::from_addr(self.start + offset), buf.len())
            .reader()
            .read_slice(buf)
    }
}

impl Drop for UserMapping {
    fn drop(&mut self) {
        // SAFETY: The range is the mapping `new()` made.
        unsafe { bindings::vm_munmap(self.start, self.len) };
    }
}

/// The errno an address-returning call encodes (`IS_ERR_VALUE()`).
fn err_value(addr: usize) -> Option<Error> {
    let v = addr as isize;
    if (-(bindings::MAX_ERRNO as isize)..0).contains(&v) {
        Some(Error::from_errno(v as i32))
    } else {
        None
    }
}
