//! Request and response bodies of draft-ietf-mimi-protocol-06 §5.
//!
//! Where the draft is ambiguous the decision taken is noted on the type and collected in
//! `docs/protocol-decisions.md` (D1, D2, ...).

mod abuse;
mod consent;
mod fanout;
mod group_info;
mod key_material;
mod query;
mod submit;
mod update;

pub use abuse::*;
pub use consent::*;
pub use fanout::*;
pub use group_info::*;
pub use key_material::*;
pub use query::*;
pub use submit::*;
pub use update::*;

use crate::wire_enum;

wire_enum! {
    /// `Protocol`: the end-to-end protocol of a room.
    pub enum Protocol: u8 as "Protocol" {
        /// MLS 1.0.
        Mls10 = 1 as "mls10",
    }
    reserved [0]
}
