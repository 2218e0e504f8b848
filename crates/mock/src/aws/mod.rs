//! CloudFormation + EC2 emulator (awsQuery / ec2Query).

pub mod query;
pub mod template;
pub mod xml;
