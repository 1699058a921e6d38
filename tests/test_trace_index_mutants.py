"""(tests to come)"""
