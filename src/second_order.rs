//! Running second-order autograd with candle.
//!
//! candle detaches every gradient it computes unless the environment variable
//! `CANDLE_GRAD_DO_NOT_DETACH` is set when a thread *first* runs a backward
//! (it is read once per thread into a thread-local). A Hessian-vector product
//! needs the gradient's own graph, so second-order work runs on a fresh
//! worker thread started after the crate set the variable; the calling thread
//! (say, a notebook that already trained experts) is never affected, and the
//! user never sets anything.
//!
//! Setting the variable is process-wide: threads that run their first
//! backward afterwards also keep gradient graphs. For first-order training
//! this costs only the bookkeeping of a graph that is dropped with the
//! gradient; the numbers are the same.

use crate::error::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use std::cell::Cell;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

const VAR: &str = "CANDLE_GRAD_DO_NOT_DETACH";
/// Stack of the worker thread: candle's backward walks the graph recursively.
const WORKER_STACK: usize = 256 << 20;

static SET_ENV: Mutex<()> = Mutex::new(());

thread_local! {
    static CHECKED: Cell<bool> = const { Cell::new(false) };
}

fn set_env() {
    let _guard = SET_ENV.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var_os(VAR).is_none_or(|v| v.is_empty() || v == "0") {
        // The crate is edition 2021, where `set_var` is safe; the lock keeps
        // two callers from racing on it.
        std::env::set_var(VAR, "1");
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread started *before* the variable is set, so candle
/// detaches the gradients it computes there; `None` when it could not be
/// made so (the variable was set by someone else first).
static DETACHING_WORKER: OnceLock<Option<Sender<Job>>> = OnceLock::new();

/// Whether candle detaches gradients on this thread: d²((x²)²)/dx² at x = 2
/// is 48 with graphs kept and 16 when the chain is cut at x².
fn second_derivative_probe() -> Result<f64> {
    let x = Var::new(&[2.0f64], &Device::Cpu)?;
    let y = x.as_tensor().sqr()?.sqr()?.sum_all()?;
    let g = y.backward()?;
    let dy = g
        .get(x.as_tensor())
        .ok_or_else(|| Error::Config("second-order probe: no gradient".into()))?;
    let second = dy.sum_all()?.backward()?;
    Ok(match second.get(x.as_tensor()) {
        Some(d2) => d2.to_vec1::<f64>()?[0],
        None => 0.0,
    })
}

fn start_detaching_worker() -> Option<Sender<Job>> {
    let (jobs, inbox) = channel::<Job>();
    let (ready, is_ready) = channel::<bool>();
    std::thread::Builder::new()
        .name("vl-distill-detaching-backward".into())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            // the first backward on this thread fixes its setting
            let detaches = matches!(second_derivative_probe(), Ok(v) if (v - 16.0).abs() < 1e-9);
            let _ = ready.send(detaches);
            for job in inbox {
                job();
            }
        })
        .ok()?;
    match is_ready.recv() {
        Ok(true) => Some(jobs),
        _ => None,
    }
}

/// `t.backward()` with every gradient detached, for the last backward pass
/// of a second-order computation (whose result is only needed as values).
///
/// On a thread that keeps gradient graphs, a backward pass records a graph
/// of its own and every gradient it computes stays alive, through the
/// graphs of the gradients it returns, until the pass ends: for the reverse
/// sweep that was most of its peak memory. Run on a detaching thread
/// instead, each intermediate gradient is freed once used. Falls back to
/// `t.backward()` on this thread (same values, more memory) when no
/// detaching thread could be had.
pub fn detached_backward(t: &Tensor) -> Result<GradStore> {
    let Some(worker) = DETACHING_WORKER.get().and_then(Option::as_ref) else {
        return Ok(t.backward()?);
    };
    let (reply, answer) = channel();
    let t = t.clone();
    worker
        .send(Box::new(move || {
            let _ = reply.send(t.backward());
        }))
        .map_err(|_| Error::Config("the detaching backward worker stopped".into()))?;
    answer
        .recv()
        .map_err(|_| Error::Config("the detaching backward worker stopped".into()))?
        .map_err(Into::into)
}

/// Runs `f` on a worker thread on which candle keeps the graphs of
/// gradients, so `backward()` of an expression containing gradients
/// differentiates them again. Panics inside `f` are propagated.
pub fn with_graph_gradients<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    // before the variable is set: a thread that detaches (see `detached_backward`)
    DETACHING_WORKER.get_or_init(start_detaching_worker);
    set_env();
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("vl-distill-second-order".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, || {
                ensure_graph_gradients()?;
                f()
            })
            .map_err(|e| Error::Config(format!("cannot start the second-order worker: {e}")))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Errors unless gradients computed on this thread keep their graph (true
/// inside [`with_graph_gradients`]). Probes once per thread with d²((x²)²)/dx².
pub fn ensure_graph_gradients() -> Result<()> {
    if CHECKED.with(Cell::get) {
        return Ok(());
    }
    // A detaching thread cuts the chain at x² and gets 16 (a single op like
    // x³ would not tell: candle's local derivative keeps its own graph
    // either way).
    let ok = (second_derivative_probe()? - 48.0).abs() < 1e-9;
    if !ok {
        return Err(Error::Config(format!(
            "candle detaches gradients on this thread ({VAR} was not set before its first \
             backward): run second-order code through vl_distill::second_order::with_graph_gradients"
        )));
    }
    CHECKED.with(|c| c.set(true));
    Ok(())
}

/// Scalar value of a one-element tensor as f64.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?[0])
}
