"""Token vending for Sangoma CX APIs: the Lambda function's code."""
