//! The in-interrupt poll must not run inside a region raised only to the
//! IPI level. On EV6/EV7 IPIs are masked from IPL 5, while a
//! performance-counter interrupt (IPL 6) or a machine check (7) still
//! arrives there; the kernel polls the IPI mailbox after every non-IPI
//! interrupt, and an ungated poll would run a queued flush in the middle of
//! an address-space switch (between `current` and the loaded ASN). The
//! simulator's performance-counter source (`SimPlatform::perf_every`)
//! lands interrupts exactly there; the MMU counts every flush body that ran
//! mid-switch (`TlbStats::applied_mid_switch`), which must stay 0.

use std::sync::atomic::Ordering::Relaxed;

use alphasmp::platform::ipl;
use alphasmp::sim::{Line, SimPlatform, SimSmp};
use alphasmp::tlb::{AddressSpace, Mmu};

type SimMmu = Mmu<SimPlatform, 4>;

fn seeds() -> u64 {
    if std::env::var_os("ALPHASMP_LONG").is_some() {
        200
    } else {
        20
    }
}

/// (flush bodies run mid-switch, polls the gate held back, perf interrupts)
fn run(seed: u64) -> (u64, u64, u64) {
    let smp: &'static SimSmp<4> = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
    smp.platform.ipi_ipl.store(ipl::IPI_OSF_PALCODE, Relaxed);
    smp.platform.perf_every.store(2, Relaxed);
    smp.policy.poll_in_irq.store(true, Relaxed);
    let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
    let a: &'static AddressSpace<4> = Box::leak(Box::new(AddressSpace::new()));
    let b: &'static AddressSpace<4> = Box::leak(Box::new(AddressSpace::new()));
    SimPlatform::run(smp, 2, move |me| {
        for i in 0..40 {
            if me == 0 {
                // Switches back and forth: each activate raises to the IPI
                // level and may take a performance-counter interrupt inside.
                mmu.activate(if i % 2 == 0 { a } else { b });
            } else {
                mmu.activate(a);
                mmu.flush_tlb_page(if i % 2 == 0 { a } else { b }, 0x2000, false)
                    .expect("the flush completes");
            }
        }
    });
    let mid = (0..2)
        .map(|c| mmu.stats[c].applied_mid_switch.load(Relaxed))
        .sum();
    let held = (0..2)
        .map(|c| smp.cpu(c).stats.polls_masked.load(Relaxed))
        .sum();
    let perf = (0..2)
        .map(|c| smp.platform.cpus[c].perf_interrupts.load(Relaxed))
        .sum();
    (mid, held, perf)
}

#[test]
fn no_flush_runs_inside_an_address_space_switch() {
    let (mut held, mut perf) = (0, 0);
    for seed in 0..seeds() {
        let (mid, h, p) = run(seed);
        assert_eq!(
            mid, 0,
            "seed {seed}: a poll ran {mid} flush(es) inside an address-space switch"
        );
        held += h;
        perf += p;
    }
    eprintln!(
        "{} seeds: {perf} performance-counter interrupts, {held} polls held back by the gate",
        seeds()
    );
    assert!(perf > 0, "the source above the IPI level never fired");
    assert!(
        held > 0,
        "no interrupt ever landed in a masked region with a message waiting: the test shows nothing"
    );
}
