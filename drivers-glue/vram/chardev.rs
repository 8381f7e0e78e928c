// SPDX-License-Identifier: GPL-2.0

//! `/dev/folio_vram`, the VRAM driver's character device: ioctls migrate a
//! range of the caller's memory to the VRAM and back, evict the VRAM and
//! report statistics. Closing the device evicts everything it holds.
//!
//! The ABI, in u64 fields (`selftests/vram_uapi.h` has it in C):
//!
//! - `FOLIO_VRAM_MIGRATE_TO_VRAM`, `FOLIO_VRAM_MIGRATE_TO_RAM`: `{ addr,
//!   npages, done }`; `addr` page aligned, `npages` not 0, the range in one
//!   VMA; `done` gets the pages migrated. Migrating to the VRAM fails with
//!   `ENOENT` when the range holds nothing it can collect (no anonymous
//!   page).
//! - `FOLIO_VRAM_EVICT`: every chunk back to system memory.
//! - `FOLIO_VRAM_STATS`: `{ copies, pages_in, pages_out, faulted,
//!   evictions, chunks_in_use, chunks }`.
//!
//! The VRAM is `folio_migrate.vram_chunks` chunks of 2 MiB (a parameter of
//! the folio_migrate object, whose `module!` names [`VramModule`]; 0 for no
//! device), reserved at init.

use crate::vram::Vram;
use core::{ffi::c_void, ptr::NonNull, sync::atomic::Ordering};
use kernel::{
    fs::File,
    ioctl::{_IO, _IOC_SIZE, _IOR, _IOWR},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    page::PAGE_SIZE,
    prelude::*,
    sync::SetOnce,
    uaccess::{UserPtr, UserSlice},
};

const FOLIO_VRAM_MIGRATE_TO_VRAM: u32 = _IOWR::<[u64; 3]>('F' as u32, 0x00);
const FOLIO_VRAM_MIGRATE_TO_RAM: u32 = _IOWR::<[u64; 3]>('F' as u32, 0x01);
const FOLIO_VRAM_EVICT: u32 = _IO('F' as u32, 0x02);
const FOLIO_VRAM_STATS: u32 = _IOR::<[u64; 7]>('F' as u32, 0x03);

/// The VRAM, set up once at init and shared by every open file.
static VRAM: SetOnce<Vram> = SetOnce::new();

/// The `pgmap_owner` cookie of the VRAM: its address.
static OWNER: u8 = 0;

/// The module: the registered device, if there is VRAM.
pub(crate) struct VramModule {
    _misc: Option<Pin<KBox<MiscDeviceRegistration<VramFile>>>>,
}

impl kernel::Module for VramModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let chunks = crate::module_parameters::vram_chunks.value() as usize;
        if chunks == 0 {
            return Ok(Self { _misc: None });
        }
        let owner = NonNull::from(&OWNER).cast::<c_void>();
        if !VRAM.populate(Vram::new(chunks, owner)?) {
            return Err(EBUSY);
        }
        let options = MiscDeviceOptions {
            name: c"folio_vram",
        };
        let misc = KBox::pin_init(MiscDeviceRegistration::register(options), GFP_KERNEL)?;
        pr_info!("folio_vram: {} MiB of VRAM\n", chunks * 2);
        Ok(Self { _misc: Some(misc) })
    }
}

/// An open `/dev/folio_vram`.
struct VramFile;

/// The VRAM, which exists while the device does.
fn vram() -> Result<&'static Vram> {
    VRAM.as_ref().ok_or(ENODEV)
}

/// Reads `{ addr, npages, done }`, runs `migrate` on the range under the
/// caller's mmap read lock and writes back `done`.
fn migrate_range(
    user: UserSlice,
    migrate: impl FnOnce(&kernel::mm::MmapReadGuard<'_>, usize, usize) -> Result<usize>,
) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let addr = usize::try_from(reader.read::<u64>()?).map_err(|_| EINVAL)?;
    let npages = usize::try_from(reader.read::<u64>()?).map_err(|_| EINVAL)?;
    let end = npages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| addr.checked_add(len))
        .filter(|_| npages != 0)
        .ok_or(EINVAL)?;
    let task = kernel::current!();
    let mm = task.mm().ok_or(EINVAL)?;
    let done = {
        let mmap = mm.mmap_read_lock();
        migrate(&mmap, addr, end)?
    };
    for v in [addr, npages, done] {
        writer.write::<u64>(&(v as u64))?;
    }
    Ok(())
}

#[vtable]
impl MiscDevice for VramFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        vram()?;
        Ok(KBox::new(VramFile, GFP_KERNEL)?)
    }

    fn release(_device: KBox<Self>, _file: &File) {
        if let Ok(vram) = vram() {
            if vram.evict_all().is_err() {
                pr_warn!("folio_vram: a chunk could not be evicted on release\n");
            }
        }
    }

    fn ioctl(_device: &VramFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let vram = vram()?;
        let user = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd));
        match cmd {
            FOLIO_VRAM_MIGRATE_TO_VRAM => migrate_range(user, |mmap, start, end| {
                match vram.migrate_to_vram(mmap, start, end)? {
                    0 => Err(ENOENT),
                    done => Ok(done),
                }
            })?,
            FOLIO_VRAM_MIGRATE_TO_RAM => migrate_range(user, |mmap, start, end| {
                vram.migrate_to_ram(mmap, start, end)
            })?,
            FOLIO_VRAM_EVICT => vram.evict_all()?,
            FOLIO_VRAM_STATS => {
                let s = vram.stats();
                let mut writer = user.writer();
                for v in [
                    s.copies.load(Ordering::Relaxed),
                    s.pages_in.load(Ordering::Relaxed),
                    s.pages_out.load(Ordering::Relaxed),
                    vram.faulted_pages(),
                    s.evictions.load(Ordering::Relaxed),
                    vram.chunks_in_use(),
                    vram.nr_chunks(),
                ] {
                    writer.write::<u64>(&(v as u64))?;
                }
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
