"""Where the local stack's AWS lives and what it is called. Import-free, so cold-start measurements
and the operator commands can use it without loading moto."""

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
TABLE_NAME = "sangoma-token-vending-local"
KEY_ALIAS = "alias/sangoma-token-vending-local"
SECRET_PREFIX = "sangoma/token-vending/"
