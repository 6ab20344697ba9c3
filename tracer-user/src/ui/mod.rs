//! What the user sees while attached.

pub mod summary;
pub mod top;
