"""What the SDK and the broker share of the contract: error reasons, the key partitioner, varints.

Imports nothing else of the project, so both sides can depend on it and on nothing of each other.
"""
