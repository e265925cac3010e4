//! The stress workload of one matrix cell in its own boot (`stress=`, what
//! `cargo xtask matrix` runs per cell). The whole matrix runs in one boot
//! per CPU count in tests/experiment.rs.

use std::path::PathBuf;
use std::sync::OnceLock;

use xtask::matrix;

fn kernel() -> &'static PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        xtask::kernel_elf(true).unwrap_or_else(|e| panic!("cannot build the kernel: {e}"))
    })
}

/// Detection time is measured on each CPU's own clock: with the CPUs'
/// counters deliberately unsynchronised (3 s apart), a deadlocking cell
/// still reports a time of about one watchdog period. And it is taken
/// when the watchdog fired, not after its report reached the console:
/// with a 9600-baud console emulated (`console_baud`, about 1 ms a byte,
/// as a real SRM console), detection was measured after the report's
/// print and came out at 761 ms for this 500 ms watchdog (503 ms without
/// the slow console); now 503.
#[test]
fn detection_time_survives_unsynchronised_clocks() {
    let append = "stress=150 inject=edge_loss ipi_lock=off ipi_poll=off resend=off watchdog_ms=500 tick_hz=1000 irq_load_us=100 clock_skew_us=3000000 wait=spin console_baud=9600";
    let r = xtask::qemu::run(&xtask::qemu::RunSpec {
        kernel: kernel(),
        smp: 4,
        mem: xtask::qemu::DEFAULT_MEM_MIB,
        append,
        timeout: std::time::Duration::from_secs(300),
        echo: false,
        image: None,
        cpu: Default::default(),
    })
    .expect("QEMU runs");
    let fields = matrix::parse_result(&r.output)
        .unwrap_or_else(|| panic!("no stress-result line:\n{}", r.output));
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("outcome"), "deadlock", "{}", r.output);
    let ms: i64 = get("detect_ms").parse().unwrap_or(-1);
    assert!(
        (500..700).contains(&ms),
        "detection after {ms} ms with a 500 ms watchdog:\n{}",
        r.output
    );
}
