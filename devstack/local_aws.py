"""Where the local stack's AWS lives. Import-free, so cold-start measurements can use it."""

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
