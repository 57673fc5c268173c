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
    // Python's ident of a thread is its pthread_t (PyThread_get_thread_ident).
    let main: usize = m
        .py()
        .import("threading")?
        .call_method0("main_thread")?
        .getattr("ident")?
        .extract()?;
    crate::blocking::net::set_main_thread(main);
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
