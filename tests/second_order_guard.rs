//! Second-order code refuses to run on a thread where candle detaches
//! gradients (it would silently return zeros), and runs inside the crate's
//! worker. Its own test binary, so no other test has set the variable yet.

use candle_core::{Device, Var};
use vl_distill::second_order::{detached_backward, ensure_graph_gradients, with_graph_gradients};

#[test]
fn detaching_threads_are_refused_and_the_worker_is_ready() {
    let preset = std::env::var_os("CANDLE_GRAD_DO_NOT_DETACH").is_some_and(|v| v != "0");
    if !preset {
        // this thread has not run a backward yet and the variable is unset
        let err = ensure_graph_gradients().unwrap_err().to_string();
        assert!(err.contains("with_graph_gradients"), "{err}");
    }
    with_graph_gradients(ensure_graph_gradients).unwrap();
    // the calling thread stays as it was: still refused
    if !preset {
        assert!(ensure_graph_gradients().is_err());
    }
    // the last pass of a second-order computation: same values, but its
    // gradients carry no graph of the pass (y = x⁴: y''' = 24x = 48 at x = 2
    // only when differentiating through the pass's own gradients)
    let third = |d2: &candle_core::Tensor, x: &Var| -> vl_distill::Result<f64> {
        Ok(match d2.sum_all()?.backward()?.get(x.as_tensor()) {
            Some(t) => t.to_vec1::<f64>()?[0],
            None => 0.0,
        })
    };
    let (d2, third_detached, third_kept) = with_graph_gradients(|| {
        let x = Var::new(&[2.0f64], &Device::Cpu)?;
        let y = x.as_tensor().sqr()?.sqr()?.sum_all()?;
        let dy = y.backward()?.get(x.as_tensor()).unwrap().sum_all()?;
        let detached = detached_backward(&dy)?.get(x.as_tensor()).unwrap().clone();
        let kept = dy.backward()?.get(x.as_tensor()).unwrap().clone();
        Ok((
            detached.to_vec1::<f64>()?[0],
            third(&detached, &x)?,
            third(&kept, &x)?,
        ))
    })
    .unwrap();
    assert!((d2 - 48.0).abs() < 1e-12, "d²y/dx² = {d2}");
    assert!(
        (third_kept - 48.0).abs() < 1e-12,
        "kept graph: y''' = {third_kept}"
    );
    if !preset {
        assert!(
            (third_detached - 48.0).abs() > 1.0,
            "detached_backward kept the graph of its pass (y''' = {third_detached})"
        );
    }
}
