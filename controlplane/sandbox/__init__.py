"""The simulated 360Voice platform and the SaaS contract fakes, for the demo and the tests."""
