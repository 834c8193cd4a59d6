"""The genzoo benchmark runner and its reports: python -m benchmarks.run"""
