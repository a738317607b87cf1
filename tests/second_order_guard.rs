//! Second-order code refuses to run on a thread where candle detaches
//! gradients (it would silently return zeros), and runs inside the crate's
//! worker. Its own test binary, so no other test has set the variable yet.

use vl_distill::second_order::{ensure_graph_gradients, with_graph_gradients};

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
}
