//! `corvid-bench`: the load generator and benchmark tool of Corvid.
//!
//! Raw MQTT 3.1.1 / 5.0 clients on tokio built on `corvid-protocol` ([`client`], [`publisher`], [`subscriber`]),
//! over TCP, TLS (rustls; test certificates from [`certs`]) or WebSocket ([`ws`]), with pre-encoded,
//! patched-in-place PUBLISH packets ([`payload`]) written in large batches (fixed-rate ones at their nominal
//! instants by one pacing thread, [`pacer`]) and read back with the codec's decoder;
//! delivery verification ([`tracker`]) and latency ([`histogram`]); the scenarios ([`scenarios`], most of them run
//! by [`flow`]); broker-side CPU and memory from `/proc` ([`measure`]); the open-file limit ([`limits`]); the null
//! relay baseline ([`relay`]); launching servers ([`launch`]) and comparing them ([`compare`]); results
//! ([`report`]).
//!
//! Every network address is loopback, and every load loop is bounded in time and in count.

pub mod certs;
pub mod client;
pub mod compare;
pub mod flow;
pub mod histogram;
pub mod launch;
pub mod limits;
pub mod measure;
pub mod pacer;
pub mod payload;
pub mod publisher;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod subscriber;
pub mod tracker;
pub mod ws;
