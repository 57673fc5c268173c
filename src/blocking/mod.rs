//! The blocking driver: sockets under deadlines (`net`) and the client that drives the engine
//! over them (`client`, on top: it uses `large` and `service`, which use `sync` and `net`).
pub mod client;
pub mod large;
pub mod net;
pub mod open;
pub mod relay;
pub mod service;
pub mod sync;
