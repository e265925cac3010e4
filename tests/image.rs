//! The SRM images: `cargo xtask image --check` over good and damaged
//! images, and boots of the images on QEMU through the emulation of SRM's
//! entry state (arch/alpha/boot/src/bin/srmemu.rs): the whole self-test
//! suite must pass through the disk image and the BOOTP image, and damaged
//! images must stop with one clear line before the kernel runs.
//!
//! The binaries come from `cargo xtask test` (ALPHASMP_KERNEL; the loader
//! and the emulation are built beside the kernel) or are built here.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use alphasmp_srm::image::{self, HEADER_OFFSET};
use xtask::qemu::{self, CpuModel, ImageBoot, RunResult, RunSpec};

fn images() -> &'static xtask::Images {
    static I: OnceLock<xtask::Images> = OnceLock::new();
    I.get_or_init(|| xtask::images(true).unwrap_or_else(|e| panic!("cannot build the images: {e}")))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn check(bytes: &[u8]) -> Result<String, String> {
    xtask::image::check(bytes, &images().kernel)
        .map(|r| r.kind.to_string())
        .map_err(|e| e.to_string())
}

fn one_line(e: &str) {
    assert!(!e.is_empty() && !e.contains('\n'), "not one line: {e:?}");
}

/// Writes `bytes` to a scratch file under target/ and returns its path.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = xtask::util::repo_root().join("target/image-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn built_images_pass_the_check() {
    let w = &images().written;
    assert_eq!(check(&read(&w.disk)), Ok("disk image".into()));
    assert_eq!(check(&read(&w.bootp)), Ok("BOOTP image".into()));
    assert!(
        w.header.load_phys >= image::MIN_KERNEL_PHYS,
        "kernel linked for {:#x}",
        w.header.load_phys
    );
}

#[test]
fn corrupted_boot_block_checksum_is_refused() {
    let mut d = read(&images().written.disk);
    d[504] ^= 0x01;
    let e = check(&d).unwrap_err();
    one_line(&e);
    assert!(e.contains("boot block checksum"), "{e}");
    // A changed count without a new sum is caught the same way.
    let mut d = read(&images().written.disk);
    d[480] ^= 0x10;
    assert!(check(&d).unwrap_err().contains("boot block checksum"));
}

#[test]
fn truncated_images_are_refused() {
    let d = read(&images().written.disk);
    let e = check(&d[..d.len() - 512]).unwrap_err();
    one_line(&e);
    assert!(e.contains("truncated"), "{e}");
    let b = read(&images().written.bootp);
    let e = check(&b[..b.len() / 2]).unwrap_err();
    one_line(&e);
    assert!(e.contains("truncated"), "{e}");
    let e = check(&b[..100]).unwrap_err();
    one_line(&e);
}

#[test]
fn damaged_payload_or_header_is_refused() {
    let b = read(&images().written.bootp);
    let h = images().written.header;
    let mut p = b.clone();
    p[h.payload_offset as usize + 1000] ^= 0x80;
    let e = check(&p).unwrap_err();
    one_line(&e);
    assert!(e.contains("image checksum"), "{e}");
    // Another load address: the checksum covers it.
    let e = check(&with_load_address(&b, h.load_phys + 0x10_0000, false)).unwrap_err();
    one_line(&e);
    assert!(e.contains("image checksum"), "{e}");
    // Re-summed: then the header no longer matches the kernel ELF.
    let e = check(&with_load_address(&b, h.load_phys + 0x10_0000, true)).unwrap_err();
    one_line(&e);
    assert!(
        e.contains("does not carry") && e.contains("load address"),
        "{e}"
    );
    // Below what real machines need.
    let e = check(&with_load_address(&b, 0x30_0000, true)).unwrap_err();
    assert!(e.contains("below 0x1000000"), "{e}");
    // A boot block whose numbers overflow is refused, not a panic.
    let mut d = read(&images().written.disk);
    d[480..488].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let sum = image::boot_block_sum(d[..512].try_into().unwrap());
    d[504..512].copy_from_slice(&sum.to_le_bytes());
    let e = check(&d).unwrap_err();
    one_line(&e);
    assert!(e.contains("truncated"), "{e}");
    let mut p = b.clone();
    p[HEADER_OFFSET] ^= 1;
    let e = check(&p).unwrap_err();
    one_line(&e);
    assert!(e.contains("not an alphasmp image"), "{e}");
}

/// The BOOTP image with its header's kernel load address (and entry, by
/// the same distance) changed; with `resum`, the checksum is recomputed
/// too, as a build linked for that address would have it.
fn with_load_address(bootp: &[u8], load: u64, resum: bool) -> Vec<u8> {
    let mut p = bootp.to_vec();
    let q = |p: &[u8], i: usize| {
        u64::from_le_bytes(
            p[HEADER_OFFSET + 8 * i..HEADER_OFFSET + 8 * i + 8]
                .try_into()
                .unwrap(),
        )
    };
    let mut h = image::Header::from_quads(|i| q(&p, i)).unwrap();
    h.entry = h.entry - h.load_phys + load;
    h.load_phys = load;
    if resum {
        h.sum =
            h.sum_of(&p[h.payload_offset as usize..(h.payload_offset + h.payload_len) as usize]);
    }
    for (i, v) in h.to_quads().iter().enumerate() {
        p[HEADER_OFFSET + 8 * i..HEADER_OFFSET + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    p
}

fn boot_image(smp: u32, device: &str, image: &Path, append: &str) -> RunResult {
    boot_image_on(CpuModel::default(), smp, device, image, append)
}

fn boot_image_on(cpu: CpuModel, smp: u32, device: &str, image: &Path, append: &str) -> RunResult {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let i = images();
    let spec = RunSpec {
        kernel: &i.kernel,
        smp,
        mem: qemu::DEFAULT_MEM_MIB,
        append,
        timeout: Duration::from_secs(180),
        echo: false,
        image: Some(ImageBoot {
            emulation: &i.emulation,
            image,
            device,
        }),
        cpu,
    };
    let r = qemu::run(&spec).expect("QEMU starts");
    eprintln!(
        "--- {device} {} smp={smp} cpu={cpu:?} append='{append}': {}\n{}",
        image.display(),
        r.describe(),
        r.output
    );
    r
}

fn assert_suite_passes_through(r: &RunResult) {
    assert!(
        r.passed(),
        "self-tests through the image did not pass: {}",
        r.describe()
    );
    assert!(r.lines_with("FAILED").next().is_none());
    let (passed, _) = r.summary().unwrap();
    assert_eq!(r.lines_with(" ... ok").count() as u32, passed);
    // The loader ran, switched PALcode and staged its copy; the kernel got
    // its arguments from the (emulated) console's GET_ENV.
    assert!(
        r.lines_with("alphasmp loader: kernel ").next().is_some(),
        "loader did not report the copy"
    );
    assert!(
        r.lines_with("alphasmp loader: OSF/1 PALcode running")
            .next()
            .is_some()
    );
    assert!(
        r.lines_with("(from SRM BOOTED_OSFLAGS)").next().is_some(),
        "kernel did not take BOOTED_OSFLAGS"
    );
    assert!(r.output.contains("alphasmp: PASS"));
    assert_halts_on_the_console_pcb(r);
}

/// The hexadecimal number that follows `marker` on the first line holding it.
fn hex_after(r: &RunResult, marker: &str) -> Option<u64> {
    let line = r.lines_with(marker).next()?;
    let rest = &line[line.find(marker)? + marker.len()..];
    let digits: String = rest
        .strip_prefix("0x")?
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// The console entered the loader on the boot CPU's slot PCB; the loader
/// had to SWPPAL on its own and the kernel ran on a copy of that. Before
/// the final halt the kernel is back on the console's PCB, by the PAL's own
/// answer (a switch to the current PCB returns it), as Linux does.
fn assert_halts_on_the_console_pcb(r: &RunResult) {
    let slot = hex_after(r, "on the boot CPU's slot PCB at ").expect("srm-emu names the PCB");
    assert_eq!(
        hex_after(r, "the console's PCB is "),
        Some(slot),
        "the loader names another PCB"
    );
    let now = hex_after(r, "halts on the console's PCB at ").unwrap_or_else(|| {
        panic!(
            "the run did not return to the console's PCB before halting: {}",
            r.describe()
        )
    });
    assert_eq!(now, slot, "the PAL reports another PCB in place");
    let ran_on = hex_after(r, "(the kernel ran on ").expect("the PCB left");
    assert_ne!(ran_on, slot);
    // Then the halt, after the exit line with the halt request.
    let exit = r.output.find("halts on the console's PCB").unwrap();
    assert!(r.output[..exit].contains("exit: CPU 0 slot flags"));
}

/// The image boots run on QEMU's EV6 (21264, no count extension), the
/// oldest CPU the kernel claims, so that both the loader and the kernel
/// prove they run on DS10/DS20-class CPUs; the ELF boots cover EV67.
/// The disk boot also writes the kernel's output through the console's
/// PUTS, which the emulation answers "terminal not ready" every other call
/// (as a console writing straight to a busy UART does): every line must
/// still arrive whole, the loader's and the kernel's.
#[test]
fn suite_passes_through_the_disk_image_on_1_ev6_cpu() {
    let r = boot_image_on(
        CpuModel::EV6,
        1,
        "dka0",
        &images().written.disk,
        "watchdog_ms=1000 console=srm",
    );
    assert_suite_passes_through(&r);
    assert!(
        r.lines_with("srm-emu: dka0: boot block OK")
            .next()
            .is_some()
    );
    let k = r.line_starting("kernel: ").expect("kernel line");
    assert!(k.contains("console srm (CRB PUTS)"), "{k}");
}

/// Through the BOOTP image on 4 EV6 CPUs, with a line CPU 1's console
/// posted before the kernel ran (`+txline`): bring-up takes it while it
/// waits for that console's `txrdy` bit to clear, or CPU 1 would never be
/// sent its START (the wait ran with the boot CPU's interrupts masked and
/// nothing took the line: "console txrdy bit stuck; not started").
#[test]
fn suite_passes_through_the_bootp_image_on_4_ev6_cpus() {
    let r = boot_image_on(
        CpuModel::EV6,
        4,
        "ewa0+txline",
        &images().written.bootp,
        "watchdog_ms=1000",
    );
    assert_suite_passes_through(&r);
    assert!(
        r.lines_with("srm-emu: CPU 1's console posted a line (txrdy set)")
            .next()
            .is_some(),
        "{}",
        r.output
    );
    assert!(
        r.lines_with("console CPU 1: a line this console posted before START")
            .next()
            .is_some(),
        "{}",
        r.output
    );
    assert!(r.lines_with("smp: 4 of 4 CPU(s) online").next().is_some());
}

/// Nothing of the kernel ran, and the run is not a pass.
fn assert_stopped_before_kernel(r: &RunResult, line: &str) {
    assert!(!r.passed(), "{}", r.describe());
    assert!(
        r.lines_with("alphasmp kernel:").next().is_none(),
        "the kernel ran:\n{}",
        r.output
    );
    let l = r
        .lines_with(line)
        .next()
        .unwrap_or_else(|| panic!("no line containing {line:?}:\n{}", r.output));
    assert!(l.contains("FAIL") || l.contains("failure"), "{l}");
}

#[test]
fn bad_boot_block_checksum_does_not_boot() {
    let mut d = read(&images().written.disk);
    d[504] ^= 0x01;
    let r = boot_image(1, "dka0", &scratch("bad-checksum.img", &d), "");
    assert_stopped_before_kernel(&r, "srm-emu: bootstrap failure: dka0: boot block checksum");
    assert!(
        r.lines_with("alphasmp loader").next().is_none(),
        "the loader ran"
    );
}

#[test]
fn truncated_disk_does_not_boot() {
    let d = read(&images().written.disk);
    let r = boot_image(1, "dka0", &scratch("truncated.img", &d[..d.len() / 2]), "");
    assert_stopped_before_kernel(
        &r,
        "srm-emu: bootstrap failure: dka0: the boot block names blocks",
    );
}

/// A console PCB that does not map the page table the kernel runs on is
/// not switched to: one line says so, and the run halts where it is, with
/// its verdict intact.
#[test]
fn a_console_pcb_on_another_page_table_is_not_switched_to() {
    let r = boot_image(1, "ewa0+foreignpcb", &images().written.bootp, "tests=smp");
    assert!(r.passed(), "{}", r.describe());
    let line = r
        .line_starting("exit: the console's PCB at ")
        .unwrap_or_else(|| panic!("no refusal line: {}", r.describe()));
    assert!(
        line.contains("names page table PFN") && line.contains("halting on the PCB at"),
        "{line}"
    );
    assert!(r.lines_with("halts on the console's PCB").next().is_none());
}

#[test]
fn kernel_address_in_console_memory_is_refused_by_the_loader() {
    // 0x10000 is inside the PALcode's reserved cluster: the loader must
    // refuse before copying anything (the header re-summed, as an image
    // linked there would be).
    let b = with_load_address(&read(&images().written.bootp), 0x1_0000, true);
    let r = boot_image(1, "ewa0", &scratch("wrong-address.bootp", &b), "");
    assert_stopped_before_kernel(&r, "alphasmp loader: FAIL: kernel range 0xa000..");
    assert!(r.lines_with("not all in usable memory").next().is_some());
}

#[test]
fn a_changed_load_address_is_refused_by_the_loader() {
    // Usable memory, but not where the kernel was linked: the checksum
    // over the header catches the edit before anything is copied.
    let h = images().written.header;
    let b = with_load_address(
        &read(&images().written.bootp),
        h.load_phys + 0x10_0000,
        false,
    );
    let r = boot_image(1, "ewa0", &scratch("moved.bootp", &b), "");
    assert_stopped_before_kernel(&r, "alphasmp loader: FAIL: image checksum");
}

#[test]
fn an_image_loaded_at_another_address_is_refused_by_the_loader() {
    // A console that maps the image at 0x30000000: the loader's first
    // instructions see it and say so (through the callbacks) and halt.
    let r = boot_image(1, "ewa0@0x30000000", &images().written.bootp, "");
    assert_stopped_before_kernel(
        &r,
        "alphasmp loader: FAIL: not running at virtual 0x20000000",
    );
}

/// A console set to 4-level page tables (`page_table_levels 4`, VPTB
/// 1 << 43): the loader refuses in one line instead of switching PALcode
/// with a page-table base it cannot find.
#[test]
fn a_four_level_console_page_table_is_refused_by_the_loader() {
    let r = boot_image(1, "ewa0+levels4", &images().written.bootp, "");
    assert_stopped_before_kernel(
        &r,
        "alphasmp loader: FAIL: the console's VPTB 0x80000000000 is not the base of a 3-level page table",
    );
}

#[test]
fn corrupted_payload_is_refused_by_the_loader() {
    let mut b = read(&images().written.bootp);
    let at = images().written.header.payload_offset as usize + 4096;
    b[at] ^= 0x20;
    let r = boot_image(1, "ewa0", &scratch("bad-payload.bootp", &b), "");
    assert_stopped_before_kernel(&r, "alphasmp loader: FAIL: image checksum");
}
