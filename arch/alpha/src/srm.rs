//! The SRM console through its Console Callback Routines (CRB): PUTS for
//! output and GET_ENV for the boot arguments (docs/hardware.md §3).
//!
//! Every SRM console has them, QEMU's PALcode included (its PUTS writes
//! COM1), so this is the console that works on every machine; Marvel has no
//! other. The call goes through `asm/crb.S` (OpenVMS calling convention);
//! what to pass and what a result means is `alphasmp_srm::crb`, host-tested.
//!
//! Rules kept here:
//! - Calls are serialised by one lock taken at IPL 7 (Linux's srmcons
//!   spinlock with IRQs off; NetBSD's IPL_HIGH mutex). Any CPU may call: no
//!   "boot CPU only" rule is documented (docs/hardware.md §3, [I]).
//! - Buffers are 8-byte aligned (aboot: some SRMs fail otherwise).
//! - Buffers are KSEG addresses, as Linux passes them. NetBSD instead
//!   copies to a 32-bit console VA ("Prom only takes 32 bit addresses");
//!   which consoles need that is open (docs/hardware.md §8), and nothing documents what
//!   a console that refuses a 64-bit buffer does. Output would then be
//!   missing on such a console; `console=uart` remains on Tsunami.
//! - The kernel keeps running on the console's page tables (it adds its own
//!   L2/L3 under an unused L1 slot, `mm.rs`), so the console's mappings of
//!   its dispatch code stay valid and FIXUP is never needed.

use alphasmp::cpulock::CpuLock;
use alphasmp_srm::crb::{self, Aligned, Status};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::console::Console;
use crate::hwrpb::{self, Hwrpb};
use crate::ipl::{self, IplGuard};

unsafe extern "Rust" {
    fn crb_dispatch(desc: u64, code: u64, a1: u64, a2: u64, a3: u64, nargs: u64) -> u64;
}

/// The console's callback dispatcher.
pub struct Crb {
    /// VA of the dispatch routine's procedure descriptor.
    desc: u64,
    /// Serialises calls into the console (knowing its holder: a machine
    /// check may come in inside this CPU's own call).
    lock: CpuLock,
}

/// Fault injection (`fault=mchk_in_console`): a function the next console
/// call runs inside itself, its locks held (its address; 0: none).
static INSIDE_NEXT_CALL: AtomicUsize = AtomicUsize::new(0);

/// Has the next console call run `f` inside itself, with its locks held.
pub fn run_inside_next_call(f: fn()) {
    INSIDE_NEXT_CALL.store(f as usize, Ordering::Relaxed);
}

/// Withdraws what [`run_inside_next_call`] asked, if no call ran it yet;
/// returns whether it was still pending.
pub fn cancel_inside_next_call() -> bool {
    INSIDE_NEXT_CALL.swap(0, Ordering::Relaxed) != 0
}

impl Crb {
    /// Finds the dispatcher through the HWRPB's CRB, if it has one.
    pub fn locate(h: &Hwrpb) -> Option<Crb> {
        let crb = hwrpb::base(h) + h.crb_offset();
        if h.crb_offset() == 0 {
            return None;
        }
        // SAFETY: the CRB lies inside the HWRPB block, mapped through KSEG.
        let desc = unsafe { core::ptr::read_volatile((crb + crb::off::DISPATCH_VA) as *const u64) };
        (desc != 0).then(|| Crb {
            desc,
            lock: CpuLock::new(),
        })
    }

    fn call(&self, code: u64, a1: u64, a2: u64, a3: u64, nargs: u64) -> Status {
        let _ipl = IplGuard::raise(ipl::HIGH);
        let me = crate::console::owner_id();
        // On the panic path the holder may be a stopped CPU: wait a bounded
        // time, then call anyway rather than hang without a report. A
        // machine check that came in inside this CPU's own call
        // (`Entry::Reentered`) calls again rather than wait for itself:
        // only a fatal one's report does (a recoverable one's note waits,
        // `machine::machine_check`).
        let _one = if crate::percpu::panicking() {
            self.lock.lock_bounded(me, 2_000_000)
        } else {
            self.lock.lock(me)
        };
        if INSIDE_NEXT_CALL.load(Ordering::Relaxed) != 0 {
            let f = INSIDE_NEXT_CALL.swap(0, Ordering::Relaxed);
            if f != 0 {
                // SAFETY: only `run_inside_next_call` stores a non-zero
                // value here, the address of a `fn()`.
                let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
                f();
            }
        }
        // SAFETY: `desc` is the console's own dispatch descriptor from the
        // CRB, mapped by the console page table this kernel runs on; the
        // stub follows the console's calling convention; buffers passed in
        // a1..a3 are live for the call (callers) and the lock keeps calls
        // from two CPUs apart.
        Status(unsafe { crb_dispatch(self.desc, code, a1, a2, a3, nargs) })
    }

    /// Writes `bytes` to console unit 0, continuing partial writes.
    pub fn puts(&self, bytes: &[u8]) -> Result<(), crb::PutsError> {
        crb::puts_all(bytes, |buf: &Aligned, n| {
            self.call(crb::code::PUTS, 0, buf.0.as_ptr() as u64, n as u64, 4)
        })
    }

    /// GET_ENV `id` into `buf` (quadwords, so 8-byte aligned); the text,
    /// trimmed, or None if the console does not support it (QEMU) or fails.
    pub fn get_env<'b>(&self, id: u64, buf: &'b mut [u64]) -> Option<&'b str> {
        let len = buf.len() * 8;
        // Four arguments counted with the function code, as for PUTS
        // (Linux's callback_srm.S passes the same count for both).
        let s = self.call(
            crb::code::GET_ENV,
            id,
            buf.as_mut_ptr() as u64,
            len as u64,
            4,
        );
        // SAFETY: any u64 slice is also a valid, initialised byte slice of
        // 8x the length; the borrow keeps `buf` exclusively ours.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        crb::env_text(bytes, s)
    }
}

/// The console device over PUTS: `\n` goes out as `\r\n`, in chunks.
pub struct SrmConsole(pub Crb);

impl Console for SrmConsole {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut chunk = [0u8; crb::CHUNK];
        let mut n = 0;
        for &b in bytes {
            if b == b'\n' {
                chunk[n] = b'\r';
                n += 1;
            }
            chunk[n] = b;
            n += 1;
            if n >= crb::CHUNK - 1 {
                self.0.puts(&chunk[..n]).ok();
                n = 0;
            }
        }
        if n > 0 {
            // An error has nowhere to be reported but this console.
            self.0.puts(&chunk[..n]).ok();
        }
    }
    fn name(&self) -> &'static str {
        "srm (CRB PUTS)"
    }
}
