//! Which role each call needs. Every method of the `petit.v1` services is listed here
//! by name, so a new RPC needs a decision (a unit test fails until it has one); an
//! unlisted `petit.v1` method needs `admin` (fail closed).

use super::Role;

/// What a call needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: health checks (load balancers and probes have none).
    Open,
    /// A token with this role or a higher one.
    Needs(Role),
}

/// The role each `petit.v1` method needs (the health RPC is open, see
/// [`required_role`]).
pub const METHOD_ROLES: &[(&str, Role)] = &[
    ("petit.v1.SchedulerService/GetSchedulerState", Role::Viewer),
    ("petit.v1.SchedulerService/WatchEvents", Role::Viewer),
    ("petit.v1.SchedulerService/ListNodes", Role::Viewer),
    ("petit.v1.SchedulerService/PauseScheduler", Role::Operator),
    ("petit.v1.JobService/PauseJob", Role::Operator),
    ("petit.v1.RunService/RerunRun", Role::Operator),
    ("petit.v1.JobService/ReloadJobs", Role::Operator),
    ("petit.v1.JobService/BackfillJob", Role::Operator),
    ("petit.v1.JobService/ResumeJob", Role::Operator),
    ("petit.v1.SchedulerService/ResumeScheduler", Role::Operator),
    // Who did what is the security record: admins only.
    ("petit.v1.SchedulerService/ListAuditRecords", Role::Admin),
    ("petit.v1.JobService/ListJobs", Role::Viewer),
    ("petit.v1.JobService/GetJob", Role::Viewer),
    ("petit.v1.JobService/ListJobRuns", Role::Viewer),
    ("petit.v1.JobService/TriggerJob", Role::Operator),
    ("petit.v1.RunService/GetRun", Role::Viewer),
    ("petit.v1.RunService/ListTaskRuns", Role::Viewer),
    ("petit.v1.RunService/WatchRun", Role::Viewer),
    ("petit.v1.RunService/GetTaskLogs", Role::Viewer),
    ("petit.v1.RunService/FollowTaskLogs", Role::Viewer),
    ("petit.v1.RunService/CancelRun", Role::Operator),
];

/// Calls answered without a token.
const OPEN: &[&str] = &[
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "petit.v1.SchedulerService/GetHealth",
];

/// What a request to the gRPC path `path` (`/package.Service/Method`) needs. Reflection
/// and unknown paths need a valid token (of any role), so that nothing about the API is
/// told to a caller without one.
pub fn required_role(path: &str) -> Access {
    let method = path.strip_prefix('/').unwrap_or(path);
    if OPEN.contains(&method) {
        return Access::Open;
    }
    if let Some((_, role)) = METHOD_ROLES.iter().find(|(name, _)| *name == method) {
        return Access::Needs(*role);
    }
    if method.starts_with("petit.") {
        return Access::Needs(Role::Admin);
    }
    Access::Needs(Role::Viewer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    #[test]
    fn every_petit_method_has_a_role() {
        let pool = DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let mut methods = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                methods.push(format!("{}/{}", service.full_name(), method.name()));
            }
        }
        assert!(!methods.is_empty());
        for method in &methods {
            let listed = METHOD_ROLES.iter().any(|(name, _)| name == method)
                || OPEN.contains(&method.as_str());
            assert!(
                listed,
                "{method} has no role in METHOD_ROLES: decide who may call it"
            );
        }
        for (name, _) in METHOD_ROLES {
            assert!(
                methods.contains(&name.to_string()),
                "{name} is not a method of the contract"
            );
        }
    }

    #[test]
    fn roles_by_path() {
        let cases = [
            ("/grpc.health.v1.Health/Check", Access::Open),
            ("/petit.v1.SchedulerService/GetHealth", Access::Open),
            ("/petit.v1.JobService/ListJobs", Access::Needs(Role::Viewer)),
            (
                "/petit.v1.JobService/TriggerJob",
                Access::Needs(Role::Operator),
            ),
            (
                "/petit.v1.RunService/CancelRun",
                Access::Needs(Role::Operator),
            ),
            (
                "/petit.v1.SchedulerService/PauseScheduler",
                Access::Needs(Role::Operator),
            ),
            (
                "/petit.v1.SchedulerService/ListAuditRecords",
                Access::Needs(Role::Admin),
            ),
            (
                "/petit.v1.JobService/SomethingNew",
                Access::Needs(Role::Admin),
            ),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Access::Needs(Role::Viewer),
            ),
            ("/nope", Access::Needs(Role::Viewer)),
        ];
        for (path, access) in cases {
            assert_eq!(required_role(path), access, "{path}");
        }
    }
}
