//! REST JSON bodies, decoded as every request message of the contract.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn messages() -> &'static [prost_reflect::MessageDescriptor] {
    static MESSAGES: OnceLock<Vec<prost_reflect::MessageDescriptor>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptors")
            .all_messages()
            .filter(|m| m.full_name().ends_with("Request"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for message in messages() {
        let _ = petit_server::api::rest::from_json_body_for_tests(message, data);
    }
});
