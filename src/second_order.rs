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
use candle_core::{Device, Tensor, Var};
use std::cell::Cell;
use std::sync::Mutex;

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

/// Runs `f` on a worker thread on which candle keeps the graphs of
/// gradients, so `backward()` of an expression containing gradients
/// differentiates them again. Panics inside `f` are propagated.
pub fn with_graph_gradients<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
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
    // y = (x²)², so y'' = 12x² = 48 at x = 2. A detaching thread cuts the
    // chain at x² and gets 16 (a single op like x³ would not tell: candle's
    // local derivative keeps its own graph either way).
    let x = Var::new(&[2.0f64], &Device::Cpu)?;
    let y = x.as_tensor().sqr()?.sqr()?.sum_all()?;
    let g = y.backward()?;
    let dy = g
        .get(x.as_tensor())
        .ok_or_else(|| Error::Config("second-order probe: no gradient".into()))?;
    let second = dy.sum_all()?.backward()?;
    let ok = match second.get(x.as_tensor()) {
        Some(d2) => {
            let v: Vec<f64> = d2.to_vec1()?;
            (v[0] - 48.0).abs() < 1e-9
        }
        None => false,
    };
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
