//! Atomic read-modify-write on every width. Alpha has only 32/64-bit
//! load-locked/store-conditional, so 8- and 16-bit atomics are masked
//! quadword loops: the second test checks they leave neighbouring bytes
//! alone. (Contention across CPUs is tested by the SMP self-tests.)

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::SeqCst};

use alphasmp_bootargs::BootConfig;

use crate::run::selftest::Outcome;
use crate::run::selftest::check;
use crate::run::selftest::check_eq;

macro_rules! exercise {
    ($atomic:ty, $int:ty, $name:literal) => {{
        let a = <$atomic>::new(<$int>::MAX - 2);
        check_eq!(
            a.fetch_add(1, SeqCst),
            <$int>::MAX - 2,
            concat!($name, " fetch_add old")
        );
        check_eq!(
            a.fetch_add(2, SeqCst),
            <$int>::MAX - 1,
            concat!($name, " fetch_add wraps")
        );
        check_eq!(a.load(SeqCst), 0, concat!($name, " after wrap"));
        check_eq!(a.fetch_or(0b1010, SeqCst), 0, concat!($name, " fetch_or"));
        check_eq!(
            a.fetch_and(0b0110, SeqCst),
            0b1010,
            concat!($name, " fetch_and")
        );
        check_eq!(
            a.fetch_xor(0b0011, SeqCst),
            0b0010,
            concat!($name, " fetch_xor")
        );
        check_eq!(a.swap(<$int>::MAX, SeqCst), 0b0001, concat!($name, " swap"));
        check_eq!(
            a.compare_exchange(0, 5, SeqCst, SeqCst),
            Err(<$int>::MAX),
            concat!($name, " failing cas")
        );
        check_eq!(
            a.compare_exchange(<$int>::MAX, 5, SeqCst, SeqCst),
            Ok(<$int>::MAX),
            concat!($name, " cas")
        );
        check_eq!(a.fetch_sub(6, SeqCst), 5, concat!($name, " fetch_sub"));
        check_eq!(a.load(SeqCst), <$int>::MAX, concat!($name, " sub wraps"));
        check_eq!(
            a.fetch_max(3, SeqCst),
            <$int>::MAX,
            concat!($name, " fetch_max")
        );
        check_eq!(
            a.fetch_min(3, SeqCst),
            <$int>::MAX,
            concat!($name, " fetch_min")
        );
        check_eq!(a.load(SeqCst), 3, concat!($name, " min result"));
    }};
}

pub fn widths(_: &BootConfig<'_>) -> Outcome {
    exercise!(AtomicU8, u8, "u8");
    exercise!(AtomicU16, u16, "u16");
    exercise!(AtomicU32, u32, "u32");
    exercise!(AtomicU64, u64, "u64");
    Ok(())
}

#[repr(C, align(8))]
struct Quad {
    bytes: [AtomicU8; 8],
}

pub fn neighbours_untouched(_: &BootConfig<'_>) -> Outcome {
    let q = Quad {
        bytes: [const { AtomicU8::new(0) }; 8],
    };
    for i in 0..8 {
        for (j, b) in q.bytes.iter().enumerate() {
            b.store(0x10 + j as u8, SeqCst);
        }
        q.bytes[i].fetch_add(0x80, SeqCst);
        q.bytes[i].swap(0xee, SeqCst);
        let _ = q.bytes[i].compare_exchange(0xee, 0xa5, SeqCst, SeqCst);
        for (j, b) in q.bytes.iter().enumerate() {
            let want = if i == j { 0xa5 } else { 0x10 + j as u8 };
            check_eq!(b.load(SeqCst), want, "byte {j} after RMW on byte {i}");
        }
    }
    let halves = [const { AtomicU16::new(0x1111) }; 4];
    halves[2].fetch_add(0x1000, SeqCst);
    let seen: [u16; 4] = core::array::from_fn(|i| halves[i].load(SeqCst));
    check!(
        seen == [0x1111, 0x1111, 0x2111, 0x1111],
        "u16 neighbours: {seen:x?}"
    );
    Ok(())
}
