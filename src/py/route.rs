//! The sans-IO route pieces for drivers written in Python (the asyncio client): proxy
//! tunnels (`Tunnel`) and redirect chains (`Redirects`). The same code runs in the blocking
//! driver, so both clients follow the same rules.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::Error;
use crate::proxy::{ProxyUrl, Tunnel};
use crate::redirect::Redirects;

use super::errors::to_pyerr;

/// Parses a proxy URL into `(scheme, host, port)` (the credentials stay in Rust).
///
/// Raises:
///     ProxyError: the URL is unusable.
#[pyfunction]
pub fn parse_proxy(py: Python<'_>, url: &str) -> PyResult<(&'static str, String, u16)> {
    let proxy = ProxyUrl::parse(url).map_err(|e| to_pyerr(py, e.into()))?;
    Ok((proxy.scheme.as_str(), proxy.host, proxy.port))
}

/// One proxy handshake (HTTP CONNECT, SOCKS5, SOCKS4a), sans-IO: write `data_to_send()` to
/// the proxy, feed what it sends to `receive_data()` until that returns the bytes that
/// followed its answer (the tunnel is open).
#[pyclass(name = "Tunnel", module = "sigil_ws._core")]
pub struct PyTunnel {
    tunnel: Tunnel,
}

#[pymethods]
impl PyTunnel {
    /// A handshake through `proxy` (a URL) to `host:port`; `host` is sent as given.
    #[new]
    fn new(py: Python<'_>, proxy: &str, host: &str, port: u16) -> PyResult<Self> {
        let result = ProxyUrl::parse(proxy).and_then(|p| Tunnel::new(&p, host, port));
        let tunnel = result.map_err(|e| to_pyerr(py, e.into()))?;
        Ok(PyTunnel { tunnel })
    }

    /// Takes the bytes to write to the proxy.
    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.tunnel.data_to_send())
    }

    /// Feeds bytes from the proxy; returns what followed its answer once the tunnel is open,
    /// else `None`.
    ///
    /// Raises:
    ///     ProxyError: the proxy refused, or broke its protocol.
    fn receive_data<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.tunnel.receive_data(data) {
            Ok(rest) => Ok(rest.map(|r| PyBytes::new(py, &r))),
            Err(e) => Err(to_pyerr(py, e.into())),
        }
    }

    /// The error for a proxy that closed the connection before the tunnel was open.
    fn eof_error(&self, py: Python<'_>) -> PyErr {
        to_pyerr(py, Error::Proxy(self.tunnel.receive_eof()))
    }

    /// The proxy as `scheme://host:port`, never with its credentials.
    #[getter]
    fn proxy(&self) -> String {
        self.tunnel.proxy().to_string()
    }
}

/// A redirect chain of the upgrade: the URL and request headers of each hop, and whether a
/// refusal is followed (301/302/303/307/308 up to `max_redirects`; credentials only to the
/// first origin; never from `wss://` to `ws://`; a loop ends the chain).
#[pyclass(name = "Redirects", module = "sigil_ws._core")]
pub struct PyRedirects {
    redirects: Redirects,
}

#[pymethods]
impl PyRedirects {
    /// Starts at `url`, whose `user:password@` becomes Basic `Authorization`.
    #[new]
    #[pyo3(signature = (url, max_redirects, headers=None))]
    fn new(
        py: Python<'_>,
        url: &str,
        max_redirects: usize,
        headers: Option<Vec<(String, String)>>,
    ) -> PyResult<Self> {
        let redirects = Redirects::new(url, max_redirects, &headers.unwrap_or_default())
            .map_err(|e| to_pyerr(py, e.into()))?;
        Ok(PyRedirects { redirects })
    }

    /// The URL of this hop, without credentials.
    #[getter]
    fn url(&self) -> String {
        self.redirects.url().to_string()
    }

    /// The request headers of this hop.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.redirects.headers()
    }

    /// The URLs connected to so far.
    #[getter]
    fn chain(&self) -> Vec<String> {
        self.redirects.chain().to_vec()
    }

    /// After a refused upgrade: `True` to go on at the new `url`, `False` when the refusal
    /// is final.
    ///
    /// Raises:
    ///     HandshakeError: a loop, too many redirects, a bad Location, or wss:// to ws://.
    #[pyo3(signature = (status, location=None))]
    fn follow(&mut self, py: Python<'_>, status: u16, location: Option<&str>) -> PyResult<bool> {
        self.redirects
            .follow(status, location)
            .map_err(|e| to_pyerr(py, e.into()))
    }
}

/// Registers the classes and functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTunnel>()?;
    m.add_class::<PyRedirects>()?;
    m.add_function(wrap_pyfunction!(parse_proxy, m)?)?;
    Ok(())
}
