"""Containerized SageMaker deployment with autoscaling, driven by one YAML file.

One job per module:
  config         the YAML schema (pydantic), validated in full before any AWS call
  capacity_plan  the JSON capacity plan that overrides the autoscaling knobs
  names          every resource name, derived from the config in one place
  desired        the API requests that describe the wanted state
  aws            boto3 clients and the translation of AWS failures into one clear message
  state          reading what exists now
  plan           the diff between the two, and how it is printed
  apply          executing a plan in dependency order, with a state report on failure
  waiters        polling an endpoint until it settles, with a deadline
  status         what is deployed now
  destroy        removing everything a deployment created
  image          the docker commands that build and push the image
"""
