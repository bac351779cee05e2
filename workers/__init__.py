"""The RQ entry points: each job function reads its `Services` and calls the domain (jobs.py names them).

`python -m workers` runs a worker for every queue.
"""
