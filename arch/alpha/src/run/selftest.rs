//! The in-kernel self-test runner.
//!
//! Each test is a function that returns `Ok(())` or a [`Failure`] describing
//! what the kernel observed. The runner prints one line per test and then the
//! exact summary line `N passed, M failed`, which the host harness reads
//! together with QEMU's exit status.

use alloc::string::String;

use alphasmp_bootargs::BootConfig;

use crate::console::println;

/// What a failing test observed.
pub struct Failure(pub String);

pub type Outcome = Result<(), Failure>;

/// A self-test.
pub struct Test {
    pub name: &'static str,
    pub run: fn(&BootConfig<'_>) -> Outcome,
}

/// Fails the test with a formatted message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::run::selftest::Failure(alloc::format!($($fmt)+)));
        }
    };
}

/// Fails the test unless the two values are equal, showing both.
macro_rules! check_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::run::selftest::Failure(alloc::format!(
                "{}: got {:?}, expected {:?}", alloc::format!($($fmt)+), l, r)));
        }
    }};
}

pub(crate) use {check, check_eq};

/// Totals of a run.
#[derive(Default, Clone, Copy)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Runs the selected tests in order and prints their results.
pub fn run(tests: &[Test], cfg: &BootConfig<'_>, summary: &mut Summary) {
    for t in tests.iter().filter(|t| cfg.selects(t.name)) {
        let start = crate::clock::now_ns();
        let result = (t.run)(cfg);
        let us = (crate::clock::now_ns() - start) / 1000;
        match result {
            Ok(()) => {
                summary.passed += 1;
                println!("test {} ... ok ({} us)", t.name, us);
            }
            Err(Failure(msg)) => {
                summary.failed += 1;
                println!("test {} ... FAILED: {}", t.name, msg);
            }
        }
    }
}
