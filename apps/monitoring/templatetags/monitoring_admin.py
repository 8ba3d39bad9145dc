from django import template

from apps.monitoring.dashboard import admin_revenue_figures

register = template.Library()


@register.inclusion_tag("admin/monitoring/_revenue.html")
def revenue_panel() -> dict:
    """The admin home's revenue table: today, the last 7 days, per product."""
    return admin_revenue_figures()
