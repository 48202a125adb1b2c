"""Work that runs beside the requests: jobs that start once a transaction commits
(`after_commit`) and, with the example API, the periodic jobs the lifespan runs
(`periodic`, `purge`).
"""
