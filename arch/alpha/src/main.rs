//! The Alpha kernel: boots on the SRM/qemu-palcode console, brings up the
//! machine, runs the in-kernel self-tests and ends the run with their
//! verdict (see README).

#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod console;
mod exit;
mod heap;
mod hwrpb;
mod interrupt;
mod ipi;
mod ipl;
mod mm;
mod pal;
mod percpu;
mod platform;
mod selftest;
mod smp;
mod stress;
mod tests;
mod trap;

use alphasmp::bootargs::{BootConfig, Fault};

use crate::hwrpb::{Hwrpb, KSEG};
use crate::selftest::Summary;

unsafe extern "Rust" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Where QEMU's loader puts the `-append` string: 0x6000 below the kernel's
/// lowest physical address (Linux's ZERO_PGE convention).
const CMDLINE_BELOW_KERNEL: u64 = 0x6000;
const CMDLINE_MAX: usize = 256;
/// Upper bound on the heap; less if memory is smaller.
const HEAP_MAX: u64 = 32 << 20;

fn kernel_range() -> (u64, u64) {
    // Linker-script symbols: only their addresses are taken.
    (&raw const __kernel_start as u64, &raw const __kernel_end as u64)
}

/// The boot command line, or None if it is not valid UTF-8.
fn cmdline() -> Option<&'static str> {
    let (start, _) = kernel_range();
    let phys = (start & !KSEG) - CMDLINE_BELOW_KERNEL;
    let ptr = (KSEG | phys) as *const u8;
    // SAFETY: this page below the kernel is RAM that the loader filled with
    // a NUL-terminated string (or zeros) and nothing else uses.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, CMDLINE_MAX) };
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(CMDLINE_MAX);
    core::str::from_utf8(&bytes[..len]).ok()
}

/// Entry from asm/head.S on the boot CPU, at IPL 7 on the boot stack.
#[unsafe(no_mangle)]
pub fn alpha_boot_main(console_pcb_phys: u64) -> ! {
    trap::install();
    let pvpanic = exit::probe();
    // SAFETY: still on the console's page table, which maps the HWRPB pointer.
    let Some(hwrpb) = (unsafe { Hwrpb::locate() }) else {
        println!("error: no HWRPB found at the console's mapping; cannot continue");
        exit::failure();
    };
    clock::init(hwrpb.cycle_freq());
    let (kstart, kend) = kernel_range();
    let memory = hwrpb.memory_bytes();
    let heap_size = HEAP_MAX.min(((KSEG + memory).saturating_sub(kend)) / 2);
    // SAFETY: [kend, kend + heap_size) is RAM past the image (inside the
    // reported memory) that nothing else uses; called once.
    unsafe { heap::init(kend, heap_size) };

    let serial = hwrpb.serial();
    let serial = core::str::from_utf8(&serial).unwrap_or("?").trim_end_matches('\0');
    println!("alphasmp kernel: Rust on DEC Alpha");
    println!(
        "hwrpb: system {} ssn '{}', {} CPU(s), memory {} MiB, cycle {} MHz, interval timer {} Hz, max ASN {}",
        hwrpb.sys_type(),
        serial,
        hwrpb.nr_processors(),
        memory >> 20,
        hwrpb.cycle_freq() / 1_000_000,
        hwrpb.intr_freq() / 4096,
        hwrpb.max_asn()
    );
    println!(
        "kernel: {:#x}..{:#x}, heap {} KiB, console {}, exit device {}",
        kstart,
        kend,
        heap::size() / 1024,
        console::device_name(),
        if pvpanic.is_some() { "pvpanic" } else { "none (halt only)" }
    );
    let Some(line) = cmdline() else {
        println!("error: boot command line is not valid UTF-8");
        exit::failure();
    };
    println!("command line: '{line}'");
    let cfg = match BootConfig::parse(line) {
        Ok(cfg) => cfg,
        Err(e) => {
            println!("error: {e}");
            exit::failure();
        }
    };

    apply_policy(&cfg);
    clock::set_tick_hz(cfg.tick_hz);
    smp::boot_cpu_online(console_pcb_phys);
    clock::start_tick();
    let bringup = smp::start_secondaries(&hwrpb, console_pcb_phys);
    println!(
        "smp: {} of {} CPU(s) online (mask {:#x}), tick {} Hz",
        percpu::online_count(),
        bringup.reported,
        percpu::online_mask(),
        clock::tick_hz()
    );
    // SAFETY: the console PCB is PAL memory readable through KSEG; offset
    // 0x10 is its page-table base (a PFN).
    let ptbr = unsafe { core::ptr::read_volatile((KSEG | (console_pcb_phys + 0x10)) as *const u64) };
    mm::init(ptbr);
    platform::MMU.set_max_asn(hwrpb.max_asn());
    BOOT.call_once(|| BootInfo { reported_cpus: bringup.reported, boot_gp: pal::gp() });
    // From here on the boot CPU takes interrupts like every other CPU.
    ipl::set(ipl::ALL_ON);

    if cfg.stress > 0 {
        stress::run(&cfg);
    }
    let mut summary = Summary::default();
    selftest::run(tests::ALL, &cfg, &mut summary);
    tests::print_counters();
    println!("{} passed, {} failed", summary.passed, summary.failed);
    if cfg.fault != Fault::None {
        raise_fault(cfg.fault);
    }
    if summary.failed == 0 { exit::success() } else { exit::failure() }
}

/// The cross-call fixes, watchdog and fault injection from the command line.
fn apply_policy(cfg: &BootConfig<'_>) {
    use core::sync::atomic::Ordering::Relaxed;
    let p = &platform::SMP.policy;
    p.serialize.store(cfg.ipi_lock, Relaxed);
    p.poll_in_irq.store(cfg.ipi_poll, Relaxed);
    p.resend.store(cfg.resend, Relaxed);
    p.watchdog_cycles.store(clock::ns_to_cycles(cfg.watchdog_ms * 1_000_000), Relaxed);
    p.allow_masked_wait.store(cfg.inject.masked_wait, Relaxed);
    platform::INJECT_EDGE_LOSS.store(cfg.inject.edge_loss, Relaxed);
    interrupt::IRQ_LOAD_NS.store(cfg.irq_load_us * 1000, Relaxed);
    println!(
        "policy: ipi_lock={} ipi_poll={} resend={} watchdog={} ms inject={}",
        if cfg.ipi_lock { "on" } else { "off" },
        if cfg.ipi_poll { "on" } else { "off" },
        if cfg.resend { "on" } else { "off" },
        cfg.watchdog_ms,
        cfg.inject.name()
    );
}

/// Facts from boot that the self-tests check.
pub struct BootInfo {
    pub reported_cpus: usize,
    pub boot_gp: u64,
}

pub static BOOT: spin::Once<BootInfo> = spin::Once::new();

unsafe extern "Rust" {
    fn fault_breakpoint();
    fn fault_illegal();
    fn fault_overflow();
    fn fault_load(addr: u64) -> u64;
    fn fault_callsys();
}

/// Raises the fault asked for with `fault=`; every one must end the run
/// through the trap report and the panic path, never return.
fn raise_fault(fault: Fault) -> ! {
    println!("fault: raising '{}' on CPU {}", fault.name(), pal::whami());
    let word = [0u64; 2];
    // SAFETY: each routine deliberately traps; the trap handler reports and
    // panics, so none of them returns into a broken state.
    unsafe {
        match fault {
            Fault::None => {}
            Fault::Breakpoint => fault_breakpoint(),
            Fault::Illegal => fault_illegal(),
            Fault::Overflow => fault_overflow(),
            // User-space VA 0x2000: not mapped by the console's page table.
            Fault::Unmapped => {
                fault_load(0x2000);
            }
            Fault::Unaligned => {
                fault_load(&raw const word as u64 + 3);
            }
            Fault::Callsys => fault_callsys(),
            Fault::Panic | Fault::PanicStuck => {
                let target = percpu::online_cpus().find(|c| *c != pal::whami()).unwrap_or(pal::whami());
                if target == pal::whami() {
                    panic!("deliberate panic on CPU {target} (fault={})", fault.name());
                }
                // panic_stuck: this CPU stays at IPL 7, so the panicking CPU's
                // stop IPI cannot arrive and must be reported, not waited for.
                let _stuck = (fault == Fault::PanicStuck).then(|| ipl::IplGuard::raise(ipl::HIGH));
                smp::IDLE_REQUEST.store(target, core::sync::atomic::Ordering::Release);
                clock::delay_ns(2_000_000_000);
            }
        }
    }
    println!("error: fault '{}' did not trap", fault.name());
    exit::failure()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ipl = ipl::IplGuard::raise(ipl::HIGH);
    match info.location() {
        Some(l) => console::print_panic(format_args!(
            "PANIC on CPU {} at {}:{}: {}\n",
            pal::whami(),
            l.file(),
            l.line(),
            info.message()
        )),
        None => console::print_panic(format_args!("PANIC on CPU {}: {}\n", pal::whami(), info.message())),
    }
    smp::stop_all_and_fail()
}
