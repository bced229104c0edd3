//! Ctrl-C during a long native call: the library's work runs on a scoped
//! thread under a [`Cancel`] token while the calling thread, without the
//! GIL, wakes every 50 ms to let the interpreter run its signal handlers
//! (`Python::check_signals`, which only the main thread may do). A handler
//! that raises (`KeyboardInterrupt` for Ctrl-C) cancels the token; the
//! library stops between images or batches of splits, publishes nothing,
//! and the handler's exception is raised.

use std::cell::RefCell;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

use confseg::cancel::Cancel;
use pyo3::prelude::*;

/// How often the calling thread checks for signals.
const POLL: Duration = Duration::from_millis(50);

thread_local! {
    /// The exception a signal handler raised during the last interrupted
    /// call on this thread, raised in place of `Error::Interrupted`.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// The exception of the signal that interrupted the last call on this
/// thread, if any.
pub fn take_pending() -> Option<PyErr> {
    PENDING.with(|p| p.borrow_mut().take())
}

/// Run `f` without the GIL, interruptibly: as `py.detach(f)`, except that
/// a signal whose handler raises stops the library's loops and makes the
/// result `Err(Error::Interrupted)` (raised as the handler's exception).
pub fn detach<T, F>(py: Python<'_>, f: F) -> confseg::Result<T>
where
    F: FnOnce() -> confseg::Result<T> + Send,
    T: Send,
{
    let token = Cancel::new();
    let mut signal: Option<PyErr> = None;
    let out = py.detach(|| {
        std::thread::scope(|scope| {
            let (tx, rx) = channel::<()>();
            let worker_token = token.clone();
            let worker = scope.spawn(move || {
                let r = worker_token.run(f);
                let _ = tx.send(());
                r
            });
            loop {
                match rx.recv_timeout(POLL) {
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) if signal.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            signal = Some(e);
                            token.cancel();
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            worker.join()
        })
    });
    let out = match out {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match signal {
        Some(e) => {
            PENDING.with(|p| *p.borrow_mut() = Some(e));
            // the handler's exception, even if the work had just finished
            Err(confseg::Error::Interrupted)
        }
        None => out,
    }
}
