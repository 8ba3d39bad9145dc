from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: the admin shows them, nothing more."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyWithActionsAdmin(ReadOnlyAdmin):
    """Read-only rows on which the list offers actions (each calling a service):
    the list keeps the change permission the actions need, while every row's
    own page is view-only, without Save or Delete buttons."""

    def has_change_permission(self, request, obj=None):
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request)
