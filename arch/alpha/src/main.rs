//! The Alpha kernel: boots on the SRM/qemu-palcode console, brings up the
//! machine, runs the in-kernel self-tests and ends the run with their
//! verdict (see README).

#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod console;
mod cpus;
mod heap;
mod hwrpb;
mod interrupt;
mod ipi;
mod ipl;
mod machine;
mod mm;
mod pal;
mod percpu;
mod platform;
mod run;
mod smp;
mod srm;
mod trap;
mod waitprobe;

use alphasmp_bootargs::BootConfig;
use alphasmp_srm::crb;
use alphasmp_srm::machine::cpu_type;

use crate::console::println;
use crate::hwrpb::KSEG;
use crate::srm::{Crb, SrmConsole};

unsafe extern "Rust" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Where QEMU's loader puts the `-append` string: 0x6000 below the kernel's
/// lowest physical address (Linux's ZERO_PGE convention), as the SRM
/// images' loader does too.
const CMDLINE_BELOW_KERNEL: u64 = alphasmp_srm::image::ZERO_PAGE_BELOW;
const CMDLINE_MAX: usize = 256;
/// Upper bound on the heap; less if memory is smaller.
const HEAP_MAX: u64 = 32 << 20;

fn kernel_range() -> (u64, u64) {
    // Linker-script symbols: only their addresses are taken.
    (
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    )
}

/// The boot command line QEMU's loader (and an SRM loader imitating
/// Linux's) leaves below the kernel, or None if it is not valid UTF-8.
fn cmdline_page() -> Option<&'static str> {
    let (start, _) = kernel_range();
    let phys = (start & !KSEG) - CMDLINE_BELOW_KERNEL;
    let ptr = (KSEG | phys) as *const u8;
    // SAFETY: this page below the kernel is RAM that the loader filled with
    // a NUL-terminated string (or zeros) and nothing else uses.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, CMDLINE_MAX) };
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(CMDLINE_MAX);
    core::str::from_utf8(&bytes[..len]).ok()
}

/// The console's own PCB, where the SRM images' loader named it in the
/// parameter page (`alphasmp_srm::image::ConsolePcb`); None when booted
/// straight from QEMU, whose loader leaves those words zero.
fn console_pcb_page() -> Option<alphasmp_srm::image::ConsolePcb> {
    let (start, _) = kernel_range();
    let at = (start & !KSEG) - CMDLINE_BELOW_KERNEL + alphasmp_srm::image::ZERO_PAGE_CONSOLE_PCB;
    let word = |i: u64| {
        // SAFETY: the parameter page below the kernel is RAM that a loader
        // filled (or left zero); these two quadwords lie inside it.
        unsafe { core::ptr::read_volatile((KSEG | (at + 8 * i)) as *const u64) }
    };
    alphasmp_srm::image::ConsolePcb::from_words([word(0), word(1)])
}

/// GET_ENV's answer: a static, 8-byte aligned buffer (no heap needed, so
/// it works even if the heap could not be placed).
static OSFLAGS: spin::Mutex<[u64; 32]> = spin::Mutex::new([0; 32]);
/// The boot arguments kept from BOOTED_OSFLAGS (its key=value words).
static ARGS: spin::Once<alloc::string::String> = spin::Once::new();

/// The boot arguments and where they came from: the console's
/// BOOTED_OSFLAGS (the `boot -flags` string) where GET_ENV answers, else
/// QEMU's command-line page (qemu-palcode does not implement GET_ENV).
///
/// A real console's BOOTED_OSFLAGS often holds an operating system's flag
/// word (`A` for Tru64, `0,0` for OpenVMS) when `boot` had no `-flags`:
/// words without `=` from the console are named in a note and dropped,
/// not refused (words given with `-flags` are key=value like QEMU's).
fn boot_arguments(crb: Option<&Crb>) -> Result<(&'static str, &'static str), &'static str> {
    if let Some(crb) = crb {
        let mut buf = OSFLAGS.lock();
        if let Some(flags) = crb.get_env(crb::env::BOOTED_OSFLAGS, &mut buf[..]) {
            let mut kept = alloc::string::String::new();
            for w in flags.split_whitespace() {
                if w.contains('=') {
                    kept.push_str(w);
                    kept.push(' ');
                } else {
                    println!(
                        "note: ignoring '{w}' in BOOTED_OSFLAGS (an OS flag word, not key=value)"
                    );
                }
            }
            return Ok((ARGS.call_once(|| kept).trim_end(), "SRM BOOTED_OSFLAGS"));
        }
    }
    cmdline_page()
        .map(|l| (l, "the command-line page"))
        .ok_or("boot command line is not valid UTF-8")
}

static SRM_CONSOLE: spin::Once<SrmConsole> = spin::Once::new();

/// The boot's one failure path once a console is chosen: the reason on one
/// `error:` line, then the verdict line `alphasmp: FAIL (why)` and the end
/// of the run (the other CPUs stopped if any were started).
fn refuse(error: impl core::fmt::Display, why: &str) -> ! {
    println!("error: {error}");
    smp::finish(false, why)
}

/// No HWRPB: this is not an SRM console (nor QEMU's). Nothing is known to
/// be safe to print to; the machine layer tries its last resort, then halt.
fn no_hwrpb(e: alphasmp_srm::hwrpb::HwrpbError) -> ! {
    machine::last_resort_console();
    println!("error: no usable HWRPB at the console's mapping ({e}); cannot continue");
    println!("alphasmp: FAIL (no HWRPB)");
    machine::end_run(false)
}

/// Entry from asm/head.S on the boot CPU, at IPL 7 on the boot stack. The
/// boot in named phases, each of which either returns what the next needs
/// or ends the run with one line (`refuse`):
///
/// 1. [`early`]: stack guard, trap vectors, the HWRPB, the clock's rate,
///    the heap;
/// 2. [`choose_machine`]: the boot arguments read (not yet judged), the
///    machine vector, the console;
/// 3. [`banner`]: what the machine is, printed;
/// 4. [`configure`]: the boot arguments judged, the policy applied;
/// 5. [`bring_up`]: the clock started, the CPUs chosen and started;
/// 6. [`prepare_memory`]: the test page tables, the ASN range;
/// 7. at IPL 0, `wait=auto`'s probe (`waitprobe::settle`), then the run
///    mode (`run::run`).
#[unsafe(no_mangle)]
pub fn alpha_boot_main(console_pcb_phys: u64) -> ! {
    // Through a pointer too (see the run mode below): inlined here, the
    // first phase's code was scheduled ahead of any instruction with a
    // source line, and `break alpha_boot_main` in gdb again stopped where
    // gdb knew none.
    let early_phase: fn() -> &'static hwrpb::Hwrpb = core::hint::black_box(early);
    let hwrpb = early_phase();
    machine::note_console_pcb(console_pcb_page(), console_pcb_phys);
    let boot = choose_machine(hwrpb);
    banner(hwrpb, &boot);
    let cfg = configure(boot.parsed, boot.console_error, boot.machine);
    bring_up(hwrpb, &cfg, boot.machine, console_pcb_phys);
    prepare_memory(hwrpb, console_pcb_phys);
    // From here on the boot CPU takes interrupts like every other CPU.
    ipl::set(ipl::ALL_ON);
    waitprobe::settle();
    // Through a pointer GCC cannot see into, so the run modes are never
    // inlined here: once they were, their locals grew this frame past a
    // page, its stack-probing prologue had no source line, and `break
    // alpha_boot_main` in gdb stopped where gdb knew none (the gdb boot
    // test). `#[inline(never)]` would not do: the backend is built without
    // its `master` feature, which is what passes inline attributes to GCC.
    let run_mode: fn(&BootConfig<'static>) -> ! = core::hint::black_box(run::run);
    run_mode(&cfg)
}

/// Phase 1: what every later phase relies on, before any output.
fn early() -> &'static hwrpb::Hwrpb {
    cpus::init_boot_stack();
    ipl::note_from_rdps();
    trap::install();
    pal::wrmces(7);
    // SAFETY: still on the console's page table, which maps the HWRPB pointer.
    let hwrpb = match unsafe { hwrpb::locate() } {
        Ok(h) => hwrpb::set(h),
        Err(e) => no_hwrpb(e),
    };
    clock::init(hwrpb.cycle_freq());
    clock::set_floor_enabled(!hwrpb.is_qemu());
    let (kstart, kend) = kernel_range();
    // The heap lies after the image, inside the usable memory cluster that
    // holds the kernel (console and PAL clusters are never touched).
    // If no usable cluster holds the image (a console that reports it
    // oddly), fall back to half of what lies past the image in all memory.
    let cluster_end = hwrpb.usable_end_containing(kstart & !KSEG);
    let limit = cluster_end.unwrap_or(hwrpb.memory_bytes()) + KSEG;
    let heap_size = HEAP_MAX.min(limit.saturating_sub(kend) / 2);
    // SAFETY: [kend, kend + heap_size) is RAM past the image, inside the
    // usable memory cluster that holds it (or inside reported memory), that
    // nothing else uses; called once.
    unsafe { heap::init(kend, heap_size) };
    hwrpb
}

/// The boot arguments as read: parsed (or why not), the line, its source.
type Parsed = Result<
    (
        Result<BootConfig<'static>, alphasmp_bootargs::BootArgError<'static>>,
        &'static str,
        &'static str,
    ),
    &'static str,
>;

/// What phase 2 found.
struct Boot {
    machine: &'static machine::MachineVector,
    choice: machine::Choice,
    id: machine::Identity,
    parsed: Parsed,
    /// A `console=` the machine cannot honour (refused in phase 4, once the
    /// banner is out on the console that could be chosen).
    console_error: Option<&'static str>,
}

/// Phase 2: the machine vector (`machine=` may force it, so the arguments
/// are read first) and the console. An unknown machine ends the run here,
/// on the SRM console if there is one.
fn choose_machine(hwrpb: &'static hwrpb::Hwrpb) -> Boot {
    let srm = Crb::locate(hwrpb).map(|c| SRM_CONSOLE.call_once(|| SrmConsole(c)));
    let args = boot_arguments(srm.map(|s| &s.0));
    let parsed: Parsed = args.map(|(line, from)| (BootConfig::parse(line), line, from));
    let forced = match &parsed {
        Ok((Ok(cfg), _, _)) => cfg.machine,
        _ => None,
    };
    let (choice, id) = match machine::identify(hwrpb, forced) {
        Ok(c) => c,
        Err(e) => {
            // Unknown machine: the SRM console is the one output that is
            // architected everywhere.
            if let Some(s) = srm {
                console::set(s);
            }
            println!("error: {e}");
            println!("alphasmp: FAIL (no machine layer)");
            machine::end_run(false);
        }
    };
    let m = choice.machine();
    let console_arg = match &parsed {
        Ok((Ok(cfg), _, _)) => cfg.console,
        _ => alphasmp_bootargs::ConsoleArg::Auto,
    };
    let console_error = match machine::console(m, console_arg, srm) {
        Ok(c) => {
            console::set(c);
            None
        }
        Err(e) => {
            if let Ok(c) = machine::console(m, alphasmp_bootargs::ConsoleArg::Auto, srm) {
                console::set(c);
            }
            Some(e)
        }
    };
    // Arguments that did not parse end the run in phase 4, after the
    // banner; the devices are quiesced by the defaults meanwhile.
    let defaults = BootConfig::defaults();
    let cfg = match &parsed {
        Ok((Ok(cfg), _, _)) => cfg,
        _ => &defaults,
    };
    machine::probe_devices(m, hwrpb, cfg);
    Boot {
        machine: m,
        choice,
        id,
        parsed,
        console_error,
    }
}

/// Phase 3: the banner (what `cargo xtask report` and a person at the
/// console read the machine's identity from).
fn banner(hwrpb: &hwrpb::Hwrpb, boot: &Boot) {
    let (kstart, kend) = kernel_range();
    let serial = hwrpb.serial();
    let serial = core::str::from_utf8(&serial)
        .unwrap_or("?")
        .trim_end_matches('\0');
    let usable: u64 = hwrpb
        .clusters()
        .filter(|c| c.usable())
        .map(|c| c.pages * hwrpb.page_size())
        .sum();
    let id = &boot.id;
    println!("alphasmp kernel: Rust on DEC Alpha");
    println!(
        "hwrpb: system {} member {} ssn '{}', CPU type {} ({}), {} CPU(s), memory {} MiB ({} MiB usable), cycle {} MHz, interval timer {} Hz, max ASN {}",
        hwrpb.sys_type(),
        hwrpb.sys_member(),
        serial,
        id.cpu_type,
        cpu_type::name(id.cpu_type),
        hwrpb.nr_processors(),
        hwrpb.memory_bytes() >> 20,
        usable >> 20,
        hwrpb.cycle_freq() / 1_000_000,
        hwrpb.intr_freq() / 4096,
        hwrpb.max_asn()
    );
    if !hwrpb.checksum_ok() {
        println!(
            "note: the HWRPB checksum does not match its contents (the console's; continuing)"
        );
    }
    if let Some(note) = machine::cpu_type_note(boot.machine, id.cpu_type) {
        println!("note: {note}");
    }
    match boot.choice {
        machine::Choice::Detected(m) => println!("machine: {} (from the HWRPB)", m.name),
        machine::Choice::Forced {
            machine: m,
            detected,
        } => {
            println!(
                "machine: {} (machine=; the HWRPB says {})",
                m.name,
                detected.map_or("an unsupported system", |d| d.name)
            )
        }
    }
    println!(
        "kernel: {:#x}..{:#x}, heap {} KiB, console {}, exit {}",
        kstart,
        kend,
        heap::size() / 1024,
        console::device_name(),
        machine::exit_device()
    );
}

/// Phase 4: the boot arguments judged (every refusal one line and a FAIL
/// verdict), then the policy they set.
fn configure(
    parsed: Parsed,
    console_error: Option<&'static str>,
    m: &machine::MachineVector,
) -> BootConfig<'static> {
    if let Some(e) = console_error {
        refuse(e, "bad console= argument");
    }
    let (line, from, parsed) = match parsed {
        Ok((parsed, line, from)) => (line, from, parsed),
        Err(e) => refuse(e, "unreadable command line"),
    };
    println!("command line: '{line}' (from {from})");
    let cfg = match parsed {
        Ok(cfg) => cfg,
        Err(e) => refuse(e, "bad boot argument"),
    };
    if let Some(prefix) = cfg.tests[..cfg.test_count]
        .iter()
        .find(|p| !run::tests::ALL.iter().any(|t| t.name.starts_with(**p)))
    {
        // A selection that runs nothing would end as an empty pass.
        let value = cfg.tests[..cfg.test_count].join(",");
        refuse(
            format_args!(
                "boot argument tests={value} selects no self-test with the prefix '{prefix}' (names look like smp.all_cpus_online, xcall.concurrent_storm)"
            ),
            "bad boot argument",
        );
    }
    clock::set_skew_us(cfg.clock_skew_us);
    apply_policy(&cfg, m);
    cfg
}

/// Phase 5: the clock, the CPU selection and the secondaries.
fn bring_up(
    hwrpb: &'static hwrpb::Hwrpb,
    cfg: &BootConfig<'_>,
    m: &machine::MachineVector,
    console_pcb_phys: u64,
) {
    let source = match machine::start_clock(m, cfg.clock, cfg.tick_hz, hwrpb) {
        Ok(s) => s,
        Err(e) => refuse(e, "bad clock= argument"),
    };
    let selection = match smp::select_cpus(hwrpb, cfg.cpus) {
        Ok(s) => s,
        Err(e) => refuse(e, "bad cpus= argument"),
    };
    smp::boot_cpu_online(console_pcb_phys);
    machine::start_clock_this_cpu();
    let bringup = smp::start_secondaries(hwrpb, console_pcb_phys);
    println!(
        "smp: {} of {} CPU(s) online (logical mask {:#x}; physical ids {:?}, present {:?}), boot CPU physical {}",
        smp::online_count(),
        bringup.mapped,
        smp::online_mask(),
        selection.chosen.iter().collect::<alloc::vec::Vec<_>>(),
        selection.present.iter().collect::<alloc::vec::Vec<_>>(),
        pal::whami(),
    );
    match source {
        clock::Source::Periodic { base_hz } => println!(
            "clock: periodic interrupt at {base_hz} Hz, divided to a {} Hz tick",
            clock::tick_hz()
        ),
        clock::Source::OneShot => {
            println!("clock: QEMU one-shot alarm, {} Hz tick", clock::tick_hz())
        }
    }
    smp::BOOT.call_once(|| smp::BootInfo {
        mapped_cpus: bringup.mapped,
        boot_gp: pal::gp(),
    });
}

/// Phase 6: the test window's page tables on the console's page table, and
/// the ASN range.
fn prepare_memory(hwrpb: &hwrpb::Hwrpb, console_pcb_phys: u64) {
    // SAFETY: the console PCB is PAL memory readable through KSEG; offset
    // 0x10 is its page-table base (a PFN).
    let ptbr =
        unsafe { core::ptr::read_volatile((KSEG | (console_pcb_phys + 0x10)) as *const u64) };
    if let Err(e) = mm::init(ptbr, hwrpb.vptb()) {
        refuse(e, "no room for the test page tables");
    }
    platform::MMU.set_max_asn(hwrpb.max_asn());
}

/// The cross-call fixes, watchdog and fault injection from the command line.
fn apply_policy(cfg: &BootConfig<'_>, m: &machine::MachineVector) {
    use core::sync::atomic::Ordering::Relaxed;
    let p = &platform::SMP.policy;
    p.serialize.store(cfg.ipi_lock, Relaxed);
    p.poll_in_irq.store(cfg.ipi_poll, Relaxed);
    p.resend.store(cfg.resend, Relaxed);
    p.watchdog_cycles
        .store(clock::ns_to_cycles(cfg.watchdog_ms * 1_000_000), Relaxed);
    p.allow_masked_wait.store(cfg.inject.masked_wait, Relaxed);
    let wait = cfg.wait.unwrap_or(m.default_wait);
    use alphasmp_bootargs::WaitArg;
    // `auto` waits adaptively until its probe, once the CPUs are online,
    // says whether spinning costs anyone a core (`waitprobe::settle`).
    waitprobe::set_pending(wait == WaitArg::Auto);
    let adaptive = matches!(wait, WaitArg::Adaptive | WaitArg::Auto);
    p.nap.store(wait != WaitArg::Spin, Relaxed);
    p.adaptive.store(adaptive, Relaxed);
    let spin_us = match cfg.nap_after_us {
        0 if adaptive => alphasmp_bootargs::ADAPTIVE_SPIN_US,
        us => us,
    };
    p.spin_before_nap
        .store(clock::ns_to_cycles(spin_us * 1000), Relaxed);
    p.spin_cpus.store(cfg.spin_cpus, Relaxed);
    let floor_us = match cfg.spin_floor_us {
        Some(us) => us,
        None if adaptive => alphasmp_bootargs::ADAPTIVE_SPIN_FLOOR_US,
        None => 0,
    };
    p.spin_floor
        .store(clock::ns_to_cycles(floor_us * 1000), Relaxed);
    let idle_us = match cfg.spin_idle_us {
        Some(us) => us,
        None if adaptive => alphasmp_bootargs::ADAPTIVE_SPIN_IDLE_US,
        None => 0,
    };
    p.spin_idle
        .store(clock::ns_to_cycles(idle_us * 1000), Relaxed);
    platform::INJECT_EDGE_LOSS.store(cfg.inject.edge_loss, Relaxed);
    // Listening hides the interrupts an injection drops (alphasmp::listen).
    let injecting = cfg.inject.edge_loss || cfg.inject.edge_loss_masked || cfg.inject.masked_wait;
    p.listen.store(cfg.ipi_listen && !injecting, Relaxed);
    platform::INJECT_EDGE_LOSS_MASKED.store(cfg.inject.edge_loss_masked, Relaxed);
    pal::WTINT_RETURNS.store(cfg.wtint_returns, Relaxed);
    let idle_poll_us = cfg.idle_poll_us.unwrap_or(m.default_idle_poll_us);
    smp::IDLE_POLL.set(alphasmp::idlepoll::Limits {
        window: clock::ns_to_cycles(idle_poll_us * 1000),
        busy_cpus: cfg.idle_poll_cpus,
    });
    interrupt::IRQ_LOAD_NS.store(cfg.irq_load_us * 1000, Relaxed);
    console::BYTE_NS.store(
        10_000_000_000u64.checked_div(cfg.console_baud).unwrap_or(0),
        Relaxed,
    );
    platform::MMU.set_lazy_idle(cfg.lazy_flush);
    println!(
        "policy: ipi_lock={} ipi_poll={} resend={} watchdog={} ms inject={} wait={}{} idle_poll={} us{}{}{}",
        if cfg.ipi_lock { "on" } else { "off" },
        if cfg.ipi_poll { "on" } else { "off" },
        if cfg.resend { "on" } else { "off" },
        cfg.watchdog_ms,
        cfg.inject.name(),
        alphasmp_bootargs::name_of(alphasmp_bootargs::WaitArg::NAMES, wait),
        if cfg.wait.is_none() {
            " (the machine's)"
        } else {
            ""
        },
        idle_poll_us,
        if cfg.wtint_returns {
            " wtint=returns"
        } else {
            ""
        },
        if cfg.lazy_flush {
            ""
        } else {
            " lazy_flush=off"
        },
        if p.listen.load(Relaxed) {
            ""
        } else {
            " ipi_listen=off"
        }
    );
}

/// `abort()` from asm/pal.S: the compiler's abort intrinsic ends up here.
#[unsafe(no_mangle)]
pub fn kernel_abort() -> ! {
    panic!("abort() called (core::intrinsics::abort)")
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ipl = ipl::IplGuard::raise(ipl::HIGH);
    let role = percpu::start_panicking();
    if let percpu::PanicRole::Reentered(n) = role
        && n > 1
    {
        // Even the short way out faulted: not one more instruction that
        // could fault again, only the failure signal and the halt.
        machine::end_run_now()
    }
    match info.location() {
        Some(l) => console::print_panic(format_args!(
            "PANIC on CPU {} at {}:{}: {}\n",
            cpus::this(),
            l.file(),
            l.line(),
            info.message()
        )),
        None => console::print_panic(format_args!(
            "PANIC on CPU {}: {}\n",
            cpus::this(),
            info.message()
        )),
    }
    smp::stop_all_and_fail(role)
}
