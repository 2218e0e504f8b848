//! From a plan to a run: the guards before anything is created (`guards`), the providers
//! and probe for the mode (`providers`), and the outputs after (`outputs`).

mod guards;
mod outputs;
mod providers;

pub use guards::*;
pub use outputs::*;
pub use providers::*;
