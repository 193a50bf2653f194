//! What goes over the wire: the SSE format, frames encoded once, and the JSON and HTML
//! renderings of events.

mod frame;
pub mod markdown;
pub mod render;
pub mod sse;

pub use frame::{Format, Frame};
