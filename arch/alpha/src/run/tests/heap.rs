//! The heap through `alloc`: growth, boxes, strings, and that freeing really
//! returns memory (the allocator's used-bytes counter goes back down).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use alphasmp_bootargs::BootConfig;

use crate::heap;
use crate::run::selftest::Outcome;
use crate::run::selftest::check;
use crate::run::selftest::check_eq;

pub fn vec_box_string(_: &BootConfig<'_>) -> Outcome {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..10_000u64 {
        v.push(i * i);
    }
    check_eq!(v.len(), 10_000, "vec length");
    check!(
        v.iter()
            .enumerate()
            .all(|(i, x)| *x == (i as u64) * (i as u64)),
        "vec contents after growth"
    );
    let sum: u64 = v.iter().sum();
    check_eq!(sum, 333_283_335_000, "sum of squares below 10000");

    let b = Box::new([7u8; 4096]);
    check!(b.iter().all(|x| *x == 7), "boxed array contents");
    check!(
        (b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<[u8; 4096]>()),
        "box alignment"
    );

    let mut s = String::new();
    for i in 0..100 {
        write!(s, "{i},").ok();
    }
    check!(
        s.starts_with("0,1,2,") && s.ends_with("98,99,"),
        "formatted string: {s}"
    );
    check_eq!(s.len(), 290, "formatted string length");
    let aligned = Box::new(Aligned(core::array::from_fn(|i| i as u64)));
    check!(
        (&*aligned as *const Aligned as usize).is_multiple_of(4096),
        "4096-byte aligned box"
    );
    check_eq!(aligned.0[7], 7, "the aligned box holds its contents");
    Ok(())
}

#[repr(align(4096))]
struct Aligned([u64; 8]);

pub fn reuse(_: &BootConfig<'_>) -> Outcome {
    let base = heap::used();
    {
        let mut vs: Vec<Vec<u8>> = (0..200).map(|i| alloc::vec![i as u8; 100 + i]).collect();
        vs.retain(|v| v.len() % 2 == 0);
        check_eq!(vs.len(), 100, "retained vectors");
        check!(
            vs.iter()
                .all(|v| v.iter().all(|b| *b as usize == v.len() - 100)),
            "vector contents"
        );
        check!(heap::used() > base, "allocations counted");
    }
    check_eq!(
        heap::used(),
        base,
        "heap bytes in use after freeing everything"
    );
    Ok(())
}
