//! ISA port I/O as Alpha needs it, and the two ISA devices the kernel uses
//! on Tsunami-class machines: the MC146818 RTC as the periodic tick and a
//! 16550 UART as a console.
//!
//! Alpha may reorder accesses to I/O space as it reorders any others: a
//! port load may pass an earlier port store to another address, so the
//! RTC's data port could be read before its index was written. Linux met
//! it on real machines ("the missing barrier between write and read causes
//! hang with serial port and real time clock", commit 54505a1e2083,
//! "alpha: fix memory barriers so that they conform to the
//! specification"), and its `inb` and `outb` have since put a memory
//! barrier before each port access and after it. QEMU carries out a
//! guest's I/O in program order and shows none of this. [`Ports`] is that
//! rule: every access between two `mb`s (docs/hardware.md §6).

/// Raw byte accesses to ISA ports, and the barrier; the kernel maps them
/// to KSEG loads and stores and `CALL_PAL`-free `mb`, the host tests to a
/// recording model.
pub trait PortIo {
    /// A byte store to `port`, nothing else.
    fn store8(&self, port: u64, value: u8);
    /// A byte load from `port`, nothing else.
    fn load8(&self, port: u64) -> u8;
    /// A memory barrier (`mb`).
    fn mb(&self);
}

/// Port accesses in program order: an `mb` before and after each.
pub struct Ports<'a, P: PortIo>(pub &'a P);

impl<P: PortIo> Ports<'_, P> {
    /// `outb`.
    pub fn outb(&self, port: u64, value: u8) {
        self.0.mb();
        self.0.store8(port, value);
        self.0.mb();
    }

    /// `inb`.
    pub fn inb(&self, port: u64) -> u8 {
        self.0.mb();
        let v = self.0.load8(port);
        self.0.mb();
        v
    }
}

// ---- The MC146818 RTC --------------------------------------------------------

/// The RTC's index and data ports.
pub const RTC_INDEX: u64 = 0x70;
pub const RTC_DATA: u64 = 0x71;
pub const RTC_A: u8 = 0x0a;
pub const RTC_B: u8 = 0x0b;
pub const RTC_C: u8 = 0x0c;
/// Register A: 32.768 kHz time base, 1024 Hz periodic rate.
pub const A_1024HZ: u8 = 0x26;
/// Rates Linux accepts as already programmed (`common_init_rtc`).
pub const A_ACCEPTED: [u8; 4] = [0x26, 0x25, 0x19, 0x06];
pub const B_PIE: u8 = 0x40;
pub const B_AIE: u8 = 0x20;
pub const B_UIE: u8 = 0x10;
pub const B_SQWE: u8 = 0x08;

/// Reads RTC register `reg`.
pub fn rtc_read(io: &impl PortIo, reg: u8) -> u8 {
    let p = Ports(io);
    p.outb(RTC_INDEX, reg);
    p.inb(RTC_DATA)
}

/// Writes RTC register `reg`.
pub fn rtc_write(io: &impl PortIo, reg: u8, value: u8) {
    let p = Ports(io);
    p.outb(RTC_INDEX, reg);
    p.outb(RTC_DATA, value);
}

/// Turns on the RTC's periodic interrupt: register A to 1024 Hz unless it
/// already holds a rate Linux accepts, periodic (PIE) and square-wave
/// (SQWE) enables on, alarm and update interrupts off, register C read
/// once (to clear what is pending). Neither Linux nor NetBSD acknowledges
/// per tick (PALcode or the board does). Returns the rate register A
/// selects, in Hz, or None if its rate select is not one (0 to 2).
pub fn rtc_start_periodic(io: &impl PortIo) -> Option<u64> {
    let a = rtc_read(io, RTC_A) & 0x7f;
    let a = if A_ACCEPTED.contains(&(a & 0x3f)) {
        a
    } else {
        rtc_write(io, RTC_A, A_1024HZ);
        A_1024HZ
    };
    let b = rtc_read(io, RTC_B);
    rtc_write(io, RTC_B, (b | B_PIE | B_SQWE) & !(B_AIE | B_UIE));
    let _ = rtc_read(io, RTC_C);
    // Rate select n (3..=15) gives 32768 >> (n - 1) Hz.
    match a & 0x0f {
        n @ 3..=15 => Some(32768 >> (n - 1)),
        _ => None,
    }
}

// ---- A 16550 UART ---------------------------------------------------------------

/// COM1's ports.
pub const COM1: u64 = 0x3f8;
/// Line status register (offset) and its bit: transmit holding register empty.
pub const UART_LSR: u64 = 5;
pub const LSR_THRE: u8 = 0x20;
/// Polls of the line status before a byte is sent anyway: a missing UART
/// must not hang the kernel.
pub const UART_POLLS: u32 = 1_000_000;

/// Sends one byte through the UART at `base`, polled: waits (bounded) for
/// the transmit holding register to be empty, then stores the byte.
pub fn uart_put(io: &impl PortIo, base: u64, byte: u8) {
    let p = Ports(io);
    let mut polls = 0u32;
    while p.inb(base + UART_LSR) & LSR_THRE == 0 && polls < UART_POLLS {
        polls += 1;
        core::hint::spin_loop();
    }
    p.outb(base, byte);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Ev {
        Store(u64, u8),
        Load(u64),
        Mb,
    }

    /// A recording model of the ports: the RTC's registers behind its
    /// index and data ports, a UART whose line status says "empty" after
    /// `busy` polls.
    struct Model {
        log: RefCell<Vec<Ev>>,
        rtc: RefCell<[u8; 128]>,
        index: RefCell<u8>,
        busy: RefCell<u32>,
    }

    impl Model {
        fn new(a: u8, b: u8) -> Model {
            let mut rtc = [0u8; 128];
            rtc[RTC_A as usize] = a;
            rtc[RTC_B as usize] = b;
            Model {
                log: RefCell::new(Vec::new()),
                rtc: RefCell::new(rtc),
                index: RefCell::new(0),
                busy: RefCell::new(0),
            }
        }
    }

    impl PortIo for Model {
        fn store8(&self, port: u64, value: u8) {
            self.log.borrow_mut().push(Ev::Store(port, value));
            match port {
                RTC_INDEX => *self.index.borrow_mut() = value & 0x7f,
                RTC_DATA => self.rtc.borrow_mut()[*self.index.borrow() as usize] = value,
                _ => {}
            }
        }
        fn load8(&self, port: u64) -> u8 {
            self.log.borrow_mut().push(Ev::Load(port));
            match port {
                RTC_DATA => self.rtc.borrow()[*self.index.borrow() as usize],
                p if p == COM1 + UART_LSR => {
                    let mut busy = self.busy.borrow_mut();
                    if *busy > 0 {
                        *busy -= 1;
                        0
                    } else {
                        LSR_THRE
                    }
                }
                _ => 0,
            }
        }
        fn mb(&self) {
            self.log.borrow_mut().push(Ev::Mb);
        }
    }

    /// Every port access has an `mb` right before it and right after it.
    fn assert_fenced(log: &[Ev]) {
        for (i, e) in log.iter().enumerate() {
            if *e != Ev::Mb {
                assert!(
                    i > 0 && log[i - 1] == Ev::Mb && log.get(i + 1) == Some(&Ev::Mb),
                    "access {i} ({e:?}) is not between barriers: {log:?}"
                );
            }
        }
    }

    fn accesses(log: &[Ev]) -> Vec<Ev> {
        log.iter().copied().filter(|e| *e != Ev::Mb).collect()
    }

    #[test]
    fn rtc_programming_is_fenced_and_sets_the_periodic_interrupt() {
        // A rate Linux does not accept, alarm and update interrupts on.
        let m = Model::new(0x20, B_AIE | B_UIE | 0x02);
        assert_eq!(rtc_start_periodic(&m), Some(1024));
        let log = m.log.borrow();
        assert_fenced(&log);
        assert_eq!(
            accesses(&log),
            [
                Ev::Store(RTC_INDEX, RTC_A),
                Ev::Load(RTC_DATA),
                Ev::Store(RTC_INDEX, RTC_A),
                Ev::Store(RTC_DATA, A_1024HZ),
                Ev::Store(RTC_INDEX, RTC_B),
                Ev::Load(RTC_DATA),
                Ev::Store(RTC_INDEX, RTC_B),
                Ev::Store(RTC_DATA, B_PIE | B_SQWE | 0x02),
                Ev::Store(RTC_INDEX, RTC_C),
                Ev::Load(RTC_DATA),
            ]
        );
        let rtc = m.rtc.borrow();
        assert_eq!(rtc[RTC_A as usize], A_1024HZ);
        assert_eq!(rtc[RTC_B as usize], B_PIE | B_SQWE | 0x02);
    }

    #[test]
    fn an_accepted_rate_is_kept_and_a_bad_one_reported() {
        // 0x25: 2048 Hz, accepted as programmed; A's top bit (update in
        // progress) ignored.
        let m = Model::new(0x80 | 0x25, 0);
        assert_eq!(rtc_start_periodic(&m), Some(2048));
        assert_eq!(m.rtc.borrow()[RTC_A as usize], 0x80 | 0x25);
        assert!(!accesses(&m.log.borrow()).contains(&Ev::Store(RTC_DATA, A_1024HZ)));
        // 0x06 is accepted too (Linux's list) and selects 1024 Hz.
        assert_eq!(rtc_start_periodic(&Model::new(0x06, 0)), Some(1024));
    }

    #[test]
    fn uart_waits_for_the_holding_register_then_sends() {
        let m = Model::new(0, 0);
        *m.busy.borrow_mut() = 3;
        uart_put(&m, COM1, b'x');
        let log = m.log.borrow();
        assert_fenced(&log);
        let acc = accesses(&log);
        assert_eq!(acc.len(), 5, "{acc:?}");
        assert!(acc[..4].iter().all(|e| *e == Ev::Load(COM1 + UART_LSR)));
        assert_eq!(acc[4], Ev::Store(COM1, b'x'));
        // A UART that never empties: the byte goes out after the bound.
        let m = Model::new(0, 0);
        *m.busy.borrow_mut() = u32::MAX;
        uart_put(&m, COM1, b'y');
        let acc = accesses(&m.log.borrow());
        assert_eq!(acc.len() as u32, UART_POLLS + 2);
        assert_eq!(acc.last(), Some(&Ev::Store(COM1, b'y')));
    }
}
