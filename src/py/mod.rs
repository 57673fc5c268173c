//! The `sigil_ws._core` extension module: registration only.

mod buffers;
mod building_blocks;
mod connection;
mod errors;
mod large;
mod logging;
mod objects;
mod options;
mod protocol;
mod route;
mod streaming;

use pyo3::prelude::*;

pub(crate) use objects::{headers_object, str_pairs};

/// The Rust core of sigil-ws.
#[pymodule(name = "_core", gil_used = false)]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    name_main_thread(m)?;
    m.add_class::<connection::PyConnection>()?;
    m.add_class::<streaming::Fragments>()?;
    m.add_class::<protocol::PyProtocol>()?;
    m.add_function(wrap_pyfunction!(connection::connect, m)?)?;
    m.add_function(wrap_pyfunction!(options::check_option, m)?)?;
    m.add("DEFAULTS", options::defaults(m.py())?)?;
    building_blocks::register(m)?;
    route::register(m)?;
    Ok(())
}

/// Tells the blocking driver which thread runs signal handlers: `threading.main_thread()`
/// (also when the interpreter is embedded on another OS thread), and in a child after
/// `os.fork()` the thread that forked, which Python makes the main one.
fn name_main_thread(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    if main.is(&threading.call_method0("current_thread")?) {
        crate::blocking::net::set_main_thread();
    } else {
        crate::blocking::net::set_main_thread_id(main.getattr("native_id")?.extract()?);
    }
    let forked = wrap_pyfunction!(forked, m)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", forked)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    Ok(())
}

/// `os.register_at_fork(after_in_child=...)`: the forking thread is the child's main thread.
#[pyfunction]
fn forked() {
    crate::blocking::net::set_main_thread();
}
