"""CDK constructs and stacks of the serving kit, and the shared topology."""
