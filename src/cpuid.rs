//! Physical CPU ids (what `whami` returns) to dense logical ids and back.
//!
//! On EV7/Marvel AlphaServers the physical ids are sparse PIDs in `0..64`
//! (e.g. 0, 2, 4, 6 or 8, 9, 12, 13), and the boot CPU need not be 0. The
//! rest of the core indexes per-CPU arrays and [`CpuMask`]s by a dense
//! logical id `0..count`. [`CpuMap`] is built once from the present
//! physical ids (HWRPB slot order, absent slots left out) and the boot CPU's
//! id: the boot CPU becomes logical 0, the others follow in increasing
//! physical order, whatever the order of the list.
//!
//! # Protocol (who writes, when, which ordering)
//!
//! A `CpuMap` lives in a `static` (`CpuMap::new` is `const`) and is written
//! once, by [`CpuMap::build`] on the boot CPU before any secondary starts:
//! `build` validates the whole list first (nothing is written on error),
//! claims the map with a compare-exchange on `state` (so a second or a
//! concurrent `build` gets [`CpuMapError::AlreadyBuilt`] and cannot tear
//! it), fills the tables with Relaxed stores, and publishes them with a
//! Release store of `READY`. Every reader loads `state` with Acquire and
//! reads the tables only if it sees `READY`, so it sees them complete; before
//! that every lookup answers `None` (count 0). After the build nothing
//! changes, so readers on any CPU, interrupt handlers included, never wait.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::cpumask::CpuMask;

/// Physical ids are below this, and there are at most this many CPUs.
pub const MAX_CPUS: usize = 64;

/// Table entry for "no CPU".
const NONE: u8 = u8::MAX;

const EMPTY: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;

/// Why a map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMapError {
    /// A physical id (of a listed CPU or of the boot CPU) is 64 or more.
    OutOfRange(usize),
    /// A physical id is listed twice.
    Duplicate(usize),
    /// The boot CPU's physical id is not among the listed ones.
    BootNotPresent(usize),
    /// The list has more than [`MAX_CPUS`] entries (checked at the 65th,
    /// before its value).
    TooMany,
    /// The list is empty.
    Empty,
    /// The map was built already (it is written once).
    AlreadyBuilt,
}

impl fmt::Display for CpuMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMapError::OutOfRange(p) => {
                write!(f, "CPU map: physical id {p} is not below {MAX_CPUS}")
            }
            CpuMapError::Duplicate(p) => write!(f, "CPU map: physical id {p} listed twice"),
            CpuMapError::BootNotPresent(p) => {
                write!(f, "CPU map: boot CPU {p} is not among the present CPUs")
            }
            CpuMapError::TooMany => write!(f, "CPU map: more than {MAX_CPUS} CPUs listed"),
            CpuMapError::Empty => write!(f, "CPU map: no present CPUs"),
            CpuMapError::AlreadyBuilt => write!(f, "CPU map: already built"),
        }
    }
}

/// The physical <-> logical CPU id map (see the module docs).
pub struct CpuMap {
    /// EMPTY, BUILDING or READY; READY is stored with Release last.
    state: AtomicU8,
    /// Logical id by physical id (NONE: not present).
    to_logical: [AtomicU8; MAX_CPUS],
    /// Physical id by logical id (NONE: beyond the count).
    to_physical: [AtomicU8; MAX_CPUS],
    /// The present physical ids as a mask.
    physical_mask: AtomicU64,
}

impl Default for CpuMap {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMap {
    /// An empty map (every lookup `None` until [`build`](Self::build)).
    pub const fn new() -> Self {
        CpuMap {
            state: AtomicU8::new(EMPTY),
            to_logical: [const { AtomicU8::new(NONE) }; MAX_CPUS],
            to_physical: [const { AtomicU8::new(NONE) }; MAX_CPUS],
            physical_mask: AtomicU64::new(0),
        }
    }

    /// Builds the map from the present physical ids (any order, e.g. HWRPB
    /// slot order with absent slots skipped) and the boot CPU's physical id.
    /// Boot CPU only, before secondaries start (see the module docs).
    pub fn build(
        &self,
        present: impl IntoIterator<Item = usize>,
        boot: usize,
    ) -> Result<(), CpuMapError> {
        let mut mask = 0u64;
        for (n, phys) in present.into_iter().enumerate() {
            if n == MAX_CPUS {
                return Err(CpuMapError::TooMany);
            }
            if phys >= MAX_CPUS {
                return Err(CpuMapError::OutOfRange(phys));
            }
            if mask & (1 << phys) != 0 {
                return Err(CpuMapError::Duplicate(phys));
            }
            mask |= 1 << phys;
        }
        if mask == 0 {
            return Err(CpuMapError::Empty);
        }
        if boot >= MAX_CPUS {
            return Err(CpuMapError::OutOfRange(boot));
        }
        if mask & (1 << boot) == 0 {
            return Err(CpuMapError::BootNotPresent(boot));
        }
        if self
            .state
            .compare_exchange(EMPTY, BUILDING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(CpuMapError::AlreadyBuilt);
        }
        let others = CpuMask(mask).without(boot).iter();
        for (logical, phys) in core::iter::once(boot).chain(others).enumerate() {
            // Both are below 64, so they fit the u8 tables.
            self.to_logical[phys].store(logical as u8, Ordering::Relaxed);
            self.to_physical[logical].store(phys as u8, Ordering::Relaxed);
        }
        self.physical_mask.store(mask, Ordering::Relaxed);
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// Whether [`build`](Self::build) has completed.
    #[inline]
    pub fn is_built(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// The logical id of physical CPU `phys`, if it is present.
    #[inline]
    pub fn logical(&self, phys: usize) -> Option<usize> {
        if phys >= MAX_CPUS || !self.is_built() {
            return None;
        }
        let l = self.to_logical[phys].load(Ordering::Relaxed);
        (l != NONE).then_some(l as usize)
    }

    /// The physical id of logical CPU `logical`, if there is one.
    #[inline(always)]
    pub fn physical(&self, logical: usize) -> Option<usize> {
        if logical >= MAX_CPUS || !self.is_built() {
            return None;
        }
        let p = self.to_physical[logical].load(Ordering::Relaxed);
        (p != NONE).then_some(p as usize)
    }

    /// Number of present CPUs (0 before the build).
    pub fn count(&self) -> usize {
        self.present_physical().count()
    }

    /// The present CPUs as logical ids: `0..count`.
    pub fn present(&self) -> CpuMask {
        CpuMask::first(self.count())
    }

    /// The present CPUs as physical ids.
    pub fn present_physical(&self) -> CpuMask {
        if !self.is_built() {
            return CpuMask::EMPTY;
        }
        CpuMask(self.physical_mask.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for CpuMap {
    /// `CpuMap [logical->physical, ...]`, e.g. `CpuMap [0->12, 1->8, 2->9]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuMap [")?;
        for l in 0..self.count() {
            let sep = if l == 0 { "" } else { ", " };
            write!(f, "{sep}{l}->{}", self.physical(l).unwrap_or(NONE as usize))?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    fn built(present: &[usize], boot: usize) -> CpuMap {
        let m = CpuMap::new();
        m.build(present.iter().copied(), boot).unwrap();
        m
    }

    /// Logical ids 0..count, as physical ids.
    fn order(m: &CpuMap) -> Vec<usize> {
        (0..m.count()).map(|l| m.physical(l).unwrap()).collect()
    }

    /// Every present CPU maps there and back; nothing else maps.
    fn check_bijection(m: &CpuMap) {
        for phys in 0..MAX_CPUS + 2 {
            match m.logical(phys) {
                Some(l) => {
                    assert!(m.present_physical().contains(phys));
                    assert!(l < m.count());
                    assert_eq!(m.physical(l), Some(phys));
                }
                None => assert!(
                    !m.present_physical().contains(phys),
                    "present {phys} unmapped"
                ),
            }
        }
        for l in m.count()..MAX_CPUS + 2 {
            assert_eq!(m.physical(l), None, "logical {l} beyond the count");
        }
    }

    #[test]
    fn empty_map_answers_nothing() {
        static MAP: CpuMap = CpuMap::new();
        assert!(!MAP.is_built());
        assert_eq!(
            (MAP.logical(0), MAP.physical(0), MAP.count()),
            (None, None, 0)
        );
        assert!(MAP.present().is_empty() && MAP.present_physical().is_empty());
    }

    #[test]
    fn identity_map() {
        let m = built(&[0, 1, 2, 3], 0);
        assert_eq!(order(&m), [0, 1, 2, 3]);
        assert_eq!(
            (0..4).map(|p| m.logical(p)).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(m.logical(4), None);
        assert_eq!(m.present(), CpuMask::first(4));
        assert_eq!(m.present_physical(), CpuMask(0b1111));
        check_bijection(&m);
    }

    #[test]
    fn marvel_even_pids() {
        let m = built(&[0, 2, 4, 6], 0);
        assert_eq!(order(&m), [0, 2, 4, 6]);
        assert_eq!(
            [m.logical(0), m.logical(2), m.logical(4), m.logical(6)],
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(
            [m.logical(1), m.logical(3), m.logical(5), m.logical(7)],
            [None; 4]
        );
        assert_eq!(m.present(), CpuMask::first(4));
        assert_eq!(m.present_physical(), CpuMask(0b0101_0101));
        check_bijection(&m);
    }

    #[test]
    fn marvel_sparse_pids_with_boot_cpu_not_first() {
        // Boot on PID 12: it is logical 0, the rest follow by PID.
        let m = built(&[8, 9, 12, 13], 12);
        assert_eq!(order(&m), [12, 8, 9, 13]);
        assert_eq!(
            [m.logical(12), m.logical(8), m.logical(9), m.logical(13)],
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(m.logical(0), None);
        assert_eq!(format!("{m:?}"), "CpuMap [0->12, 1->8, 2->9, 3->13]");
        check_bijection(&m);
        // The order of the list does not matter, only the boot CPU does.
        assert_eq!(order(&built(&[13, 12, 9, 8], 12)), [12, 8, 9, 13]);
        assert_eq!(order(&built(&[8, 9, 12, 13], 13)), [13, 8, 9, 12]);
        assert_eq!(order(&built(&[8, 9, 12, 13], 8)), [8, 9, 12, 13]);
    }

    #[test]
    fn single_cpu() {
        let m = built(&[37], 37);
        assert_eq!(
            (m.count(), m.logical(37), m.physical(0), m.physical(1)),
            (1, Some(0), Some(37), None)
        );
        check_bijection(&m);
    }

    #[test]
    fn all_64_cpus() {
        let all: Vec<usize> = (0..64).rev().collect();
        let m = built(&all, 63);
        assert_eq!(m.count(), 64);
        assert_eq!(m.present(), CpuMask(u64::MAX));
        assert_eq!(m.present_physical(), CpuMask(u64::MAX));
        assert_eq!(m.physical(0), Some(63));
        for p in 0..63 {
            assert_eq!(m.logical(p), Some(p + 1));
        }
        check_bijection(&m);
    }

    #[test]
    fn absent_hwrpb_slots_are_skipped() {
        // HWRPB slots by PID: present where the flag is set.
        let slot_present = [
            true, false, true, false, false, true, true, false, false, false, false, true,
        ];
        let present = slot_present
            .iter()
            .enumerate()
            .filter(|(_, p)| **p)
            .map(|(pid, _)| pid);
        let m = CpuMap::new();
        m.build(present, 5).unwrap();
        assert_eq!(order(&m), [5, 0, 2, 6, 11]);
        for pid in [1, 3, 4, 7, 8, 9, 10] {
            assert_eq!(m.logical(pid), None, "absent slot {pid}");
        }
        check_bijection(&m);
    }

    #[test]
    fn every_error() {
        let e = |present: &[usize], boot| {
            CpuMap::new()
                .build(present.iter().copied(), boot)
                .unwrap_err()
        };
        assert_eq!(e(&[0, 64], 0), CpuMapError::OutOfRange(64));
        assert_eq!(e(&[0, usize::MAX], 0), CpuMapError::OutOfRange(usize::MAX));
        assert_eq!(e(&[0, 1], 64), CpuMapError::OutOfRange(64));
        assert_eq!(e(&[0, 2, 4, 2], 0), CpuMapError::Duplicate(2));
        assert_eq!(e(&[8, 9, 12, 13], 0), CpuMapError::BootNotPresent(0));
        assert_eq!(e(&[], 0), CpuMapError::Empty);
        // 65 entries: refused as too many before the 65th is even looked at.
        let many: Vec<usize> = (0..64).chain([0]).collect();
        assert_eq!(e(&many, 0), CpuMapError::TooMany);
        // An endless list (a corrupt CPU count) ends too.
        assert_eq!(
            CpuMap::new().build((0..).map(|i| i % 64), 3),
            Err(CpuMapError::TooMany)
        );
        for (err, needle) in [
            (CpuMapError::OutOfRange(70), "70"),
            (CpuMapError::Duplicate(9), "9 listed twice"),
            (CpuMapError::BootNotPresent(12), "boot CPU 12"),
            (CpuMapError::TooMany, "more than 64"),
            (CpuMapError::Empty, "no present"),
            (CpuMapError::AlreadyBuilt, "already"),
        ] {
            let s = err.to_string();
            assert!(s.contains(needle) && !s.contains('\n'), "{s:?}");
        }
    }

    #[test]
    fn failed_build_leaves_the_map_empty_and_buildable() {
        let m = CpuMap::new();
        assert_eq!(m.build([8, 9, 9], 8), Err(CpuMapError::Duplicate(9)));
        assert!(!m.is_built());
        assert_eq!((m.logical(8), m.count()), (None, 0));
        m.build([8, 9], 9).unwrap();
        assert_eq!(order(&m), [9, 8]);
    }

    #[test]
    fn built_once() {
        let m = built(&[0, 2], 2);
        assert_eq!(m.build([0, 1, 2, 3], 0), Err(CpuMapError::AlreadyBuilt));
        assert_eq!(order(&m), [2, 0], "the second build changed nothing");
    }

    #[test]
    fn concurrent_readers_see_nothing_or_the_whole_map() {
        static MAP: CpuMap = CpuMap::new();
        let pids = [8usize, 9, 12, 13, 40, 41, 44, 45];
        // Set once both builds returned: a reader that then still finds the
        // map unbuilt fails instead of waiting for ever.
        let builds_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen_built = false;
                        while !seen_built {
                            let late = builds_done.load(Ordering::Acquire);
                            seen_built = MAP.is_built();
                            assert!(
                                seen_built || !late,
                                "both builds returned and the map is not built"
                            );
                            if seen_built {
                                // Built means complete: every entry there.
                                assert_eq!(MAP.count(), pids.len());
                                for p in pids {
                                    assert_eq!(MAP.physical(MAP.logical(p).unwrap()), Some(p));
                                }
                            } else {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            // Two builders race; exactly one wins.
            let b1 = s.spawn(|| MAP.build(pids, 12));
            let b2 = s.spawn(|| MAP.build(pids, 12));
            let r = [b1.join().unwrap(), b2.join().unwrap()];
            builds_done.store(true, Ordering::Release);
            assert!(
                r.contains(&Ok(())) && r.contains(&Err(CpuMapError::AlreadyBuilt)),
                "{r:?}"
            );
            for t in readers {
                t.join().unwrap();
            }
        });
        assert_eq!(order(&MAP), [12, 8, 9, 13, 40, 41, 44, 45]);
    }
}
