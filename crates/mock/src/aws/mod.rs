//! CloudFormation + EC2 emulator (awsQuery / ec2Query).
