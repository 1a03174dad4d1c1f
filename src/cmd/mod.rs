//! One module per subcommand; each turns parsed arguments into effects.

pub mod certs;
pub mod crd;
pub mod doctor;
pub mod render;
pub mod run;
pub mod status;
