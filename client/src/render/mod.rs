//! Rendering for people and scripts: aligned tables with optional colour, durations and
//! times in short forms, colour for the vocabulary's tones, the task DAG as a tree, and
//! the proto3 JSON form of any response message.

mod dag;
mod json;
mod style;
mod table;
mod text;

pub use dag::{dag_tree, TreeLine, TreeMark};
pub use json::{enum_numbers, to_json, to_json_string, JsonError, ProtoMessage};
pub use style::{color_enabled, paint};
pub use table::{fields, Cell, Table};
pub use text::{
    format_clock, format_clock_in, format_duration, format_proto_duration, format_time,
    format_time_in, timestamp_to_utc,
};
