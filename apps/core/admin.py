from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: the admin shows them, nothing more."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
