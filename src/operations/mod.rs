//! The operator's commands that work on a database file rather than serve it: `backup` (a
//! consistent copy while the server runs), `export` (messages in their current state, as JSON
//! lines or CSV) and `import` (an export into a new database). Each returns what to tell the
//! operator, or an error worded for them; `main` prints either and sets the exit status.

pub mod backup;
pub mod export;
pub mod import;
