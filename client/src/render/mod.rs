//! Rendering for people and scripts: aligned tables with optional colour, durations and
//! times in short forms (each time in the zone chosen for it, saying which), colour for
//! the vocabulary's tones, the task DAG as a tree, and the proto3 JSON form of any
//! response message.

mod dag;
mod json;
mod style;
mod table;
mod text;
mod zone;

/// The IANA zones of [`Zone::Named`] (chrono-tz's).
pub use chrono_tz::Tz;
pub use dag::{dag_tree, TreeLine, TreeMark};
pub use json::{enum_numbers, to_json, to_json_string, JsonError, ProtoMessage};
pub use style::{color_enabled, paint};
pub use table::{fields, Cell, Table};
pub use text::{
    format_clock, format_duration, format_fire_time, format_proto_duration, format_time,
    timestamp_to_utc,
};
pub use zone::{job_zone, Zone, ZoneChoice, Zones};
