//! Ctrl-C during a long native call: the library's work runs on a scoped
//! thread under a [`Cancel`] token while the calling thread, without the
//! GIL, wakes every 50 ms to let the interpreter run its signal handlers
//! (`Python::check_signals`, which only the main thread may do). A handler
//! that raises (`KeyboardInterrupt` for Ctrl-C) cancels the token; the
//! library stops between images or batches of splits, publishes nothing,
//! and the handler's exception is raised. The same loop shows progress
//! (`progress=` of long calls, [`detach_reporting`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
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

/// Progress of a long call, counted by the library's worker threads and
/// shown by the calling thread.
#[derive(Debug, Default)]
pub struct Counter {
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Counter {
    /// One more unit done.
    pub fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// `done` of `total` units.
    pub fn set(&self, done: usize, total: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
    }

    /// The total, when known before the call.
    pub fn with_total(total: usize) -> Arc<Counter> {
        Arc::new(Counter { done: AtomicUsize::new(0), total: AtomicUsize::new(total) })
    }

    fn get(&self) -> (usize, usize) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

/// A `progress=` argument: `None`/`False` for none, `True` for a tqdm bar,
/// or a callable `progress(done, total)` (see `confseg._progress`).
pub fn progress_arg(py: Python<'_>, progress: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match progress {
        None => Ok(None),
        Some(p) if p.is_none() => Ok(None),
        Some(p) => {
            let r = py.import("confseg._progress")?.call_method1("resolve", (p,))?;
            Ok((!r.is_none()).then(|| r.unbind()))
        }
    }
}

/// Run `f` without the GIL, interruptibly: as `py.detach(f)`, except that
/// a signal whose handler raises stops the library's loops and makes the
/// result `Err(Error::Interrupted)` (raised as the handler's exception).
pub fn detach<T, F>(py: Python<'_>, f: F) -> confseg::Result<T>
where
    F: FnOnce() -> confseg::Result<T> + Send,
    T: Send,
{
    detach_reporting(py, None, Arc::default(), |_| f())
}

/// [`detach`] that also shows progress: `f` counts on the [`Counter`], and
/// every 50 ms the calling thread calls `progress(done, total)` when the
/// count moved (and once at the end). An exception from `progress` stops
/// the call as a signal does.
pub fn detach_reporting<T, F>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    counter: Arc<Counter>,
    f: F,
) -> confseg::Result<T>
where
    F: FnOnce(&Arc<Counter>) -> confseg::Result<T> + Send,
    T: Send,
{
    let token = Cancel::new();
    let mut signal: Option<PyErr> = None;
    let mut shown = (usize::MAX, usize::MAX);
    let report = |py: Python<'_>, shown: &mut (usize, usize)| -> PyResult<()> {
        let Some(p) = &progress else { return Ok(()) };
        let now = counter.get();
        if now != *shown {
            *shown = now;
            p.call1(py, now)?;
        }
        Ok(())
    };
    let counter_ref = &counter;
    let out = py.detach(|| {
        std::thread::scope(|scope| {
            let (tx, rx) = channel::<()>();
            let worker_token = token.clone();
            let worker = scope.spawn(move || {
                let r = worker_token.run(|| f(counter_ref));
                let _ = tx.send(());
                r
            });
            loop {
                match rx.recv_timeout(POLL) {
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) if signal.is_none() => {
                        if let Err(e) = Python::attach(|py| {
                            py.check_signals()?;
                            report(py, &mut shown)
                        }) {
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
    if signal.is_none() && out.is_ok() {
        if let Err(e) = report(py, &mut shown) {
            signal = Some(e);
        }
    }
    if let Some(p) = &progress {
        if let Ok(close) = p.getattr(py, "close") {
            let _ = close.call0(py);
        }
    }
    match signal {
        Some(e) => {
            PENDING.with(|p| *p.borrow_mut() = Some(e));
            // the handler's exception, even if the work had just finished
            Err(confseg::Error::Interrupted)
        }
        None => out,
    }
}
