"""The minimal comparison app for ``make synth``'s cost: one aws_ecs_patterns ALB + Fargate service.

Environment-agnostic (no lookups), image from a registry (no asset), default VPC made by the pattern,
no cdk-nag. Synthesized by bench/cost.py exactly like the project: ``npx --no-install cdk synth --quiet``.
"""

from aws_cdk import App, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as patterns

app = App()
stack = Stack(app, "MinimalPatternStack")
patterns.ApplicationLoadBalancedFargateService(
    stack,
    "Service",
    task_image_options=patterns.ApplicationLoadBalancedTaskImageOptions(
        image=ecs.ContainerImage.from_registry("public.ecr.aws/nginx/nginx:stable"),
        container_port=80,
    ),
)
app.synth()
