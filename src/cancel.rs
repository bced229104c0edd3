//! Cancellation of long computations: a caller's [`Cancel`] token, which
//! the library's loops over images (calibration, prediction, transforms,
//! validation pools, cohorts read from files) and over validation splits
//! check between items, stopping with [`Error::Interrupted`].
//!
//! ```
//! use confseg::cancel::Cancel;
//! use confseg::synthetic::Synthetic;
//! use confseg::{Calibrator, Identity, Error};
//!
//! let (scores, masks) = Synthetic::new([16, 16]).seed(1).stack(0..20);
//! let calibrator = Calibrator::new(Identity, Identity);
//! let token = Cancel::new();
//! token.cancel(); // e.g. from a Ctrl-C handler on another thread
//! let result = token.run(|| calibrator.calibrate_stack(&scores, &masks));
//! assert_eq!(result.unwrap_err(), Error::Interrupted);
//! ```
//!
//! The Python bindings run every long call under a token that is cancelled
//! when the interpreter sees a signal (Ctrl-C), so that `KeyboardInterrupt`
//! arrives within one image or one batch of splits.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A cancellation flag shared between a caller and the computations it
/// runs with [`Cancel::run`]; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

impl Cancel {
    /// A token not yet cancelled.
    #[must_use]
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Ask the computations running under this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Interrupted)` once cancelled.
    ///
    /// # Errors
    /// [`Error::Interrupted`] if the token was cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Run `f` on this thread with this token as the current one: the
    /// library's loops over images and splits that `f` starts check it
    /// between items (also on their worker threads) and return
    /// [`Error::Interrupted`] once it is cancelled. Nothing that such a
    /// loop publishes (output files) is left half-written: the staged
    /// outputs of an interrupted run are removed.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Cancel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }
}

/// The token of the innermost [`Cancel::run`] on this thread, if any: a
/// loop takes it before handing items to worker threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Current(Option<Cancel>);

impl Current {
    /// The calling thread's current token.
    pub(crate) fn get() -> Self {
        Current(CURRENT.with(|c| c.borrow().clone()))
    }

    /// `Err(Error::Interrupted)` if the token was cancelled.
    pub(crate) fn check(&self) -> Result<()> {
        self.0.as_ref().map_or(Ok(()), Cancel::check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> Result<()> {
        Current::get().check()
    }

    #[test]
    fn tokens_are_scoped_to_run() {
        let t = Cancel::new();
        t.cancel();
        assert_eq!(t.run(check), Err(Error::Interrupted));
        assert_eq!(check(), Ok(()));
        let u = Cancel::new();
        assert_eq!(u.run(|| (check(), t.run(check), check())), (Ok(()), Err(Error::Interrupted), Ok(())));
    }
}
