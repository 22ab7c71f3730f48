//! Model-based runs: random sequences of operations, each step checked against a model.

use std::cell::Cell;
use std::fmt::Debug;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// How many operations the sequences ran, and how many of them succeeded.
#[derive(Default)]
pub struct Tally {
    total: Cell<usize>,
    succeeded: Cell<usize>,
}

impl Tally {
    pub fn count(&self, ok: bool) {
        self.total.set(self.total.get() + 1);
        self.succeeded.set(self.succeeded.get() + usize::from(ok));
    }

    /// Asserts that at least one operation in `every` succeeded: the sequences did more than
    /// collect refusals.
    pub fn assert_one_in(&self, every: usize) {
        let (succeeded, total) = (self.succeeded.get(), self.total.get());
        assert!(
            succeeded * every >= total,
            "only {succeeded} of {total} operations succeeded"
        );
    }
}

/// Runs 24 sequences of 10 to 40 operations drawn from `op` (no failure persistence: a
/// failure prints its sequence); `sequence` gets the case number (from 1), the operations and
/// the tally to count them in.
pub fn run_sequences<S>(
    op: S,
    sequence: impl Fn(usize, &[S::Value], &Tally) -> Result<(), TestCaseError>,
) -> Tally
where
    S: Strategy,
    S::Value: Debug,
{
    let case = Cell::new(0usize);
    let tally = Tally::default();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(op, 10..40);
    let result = runner.run(&strategy, |ops| {
        case.set(case.get() + 1);
        sequence(case.get(), &ops, &tally)
    });
    result.unwrap();
    tally
}
